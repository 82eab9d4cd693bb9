"""Resident memory of idle workers: ``celery -A stepper worker`` as the cpu and llm profiles run it.

Each worker is started with its profile's queues, pool and concurrency (stepper/workers/profiles.py), left
to settle after it is ready, and every process is read: the main process and, under prefork, each pool
child (VmRSS from /proc/<pid>/status; shared pages count in each process that maps them). An idle bare
Celery worker (bench/bare_app.py, prefork, same concurrency as the cpu profile) is the context. Target
(profiles issue): every process under 150 MB.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import Figure, bare_worker, compare, progress, redis_url
from stepper.workers.profiles import PROFILES, Profile
from tests.support.redis_server import RedisServer
from tests.support.workers import Worker, start_worker

TARGET_MB = 150.0
SETTLE_TIMEOUT_S = 10.0


def run(redis: RedisServer) -> dict[str, dict[str, Any]]:
    cpu, llm = PROFILES["cpu"], PROFILES["llm"]
    cores = os.cpu_count() or 1
    progress(f"memory: an idle bare Celery worker (prefork x{cores})")
    with bare_worker(redis, 5, name="bench-bare-idle", pool="prefork", concurrency=cores) as (_, worker):
        bare = settled_rss_mb(worker, cores)
    results = {}
    for database, profile in ((6, cpu), (7, llm)):
        concurrency = profile.concurrency or cores
        progress(f"memory: an idle stepper worker, {profile.name} profile ({profile.pool} x{concurrency})")
        stepper = idle_stepper_rss_mb(redis, database, profile, concurrency)
        largest = max(stepper.values())
        results[f"memory.{profile.name}"] = compare(
            Figure(f"{profile.name} worker, largest of {len(stepper)} process(es)", largest, "MB"),
            Figure("bare Celery worker, largest process", max(bare.values()), "MB"),
            f"every process < {TARGET_MB:g} MB",
            largest < TARGET_MB,
            processes={name: round(mb, 1) for name, mb in stepper.items()},
            bare_processes={name: round(mb, 1) for name, mb in bare.items()},
        )
    return results


def idle_stepper_rss_mb(redis: RedisServer, database: int, profile: Profile, concurrency: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        worker = start_worker(
            redis_url(redis, database),
            Path(directory),
            {},
            name=f"bench-{profile.name}-idle",
            pool=profile.pool,
            concurrency=concurrency,
            queues=list(profile.queues),
        )
        try:
            return settled_rss_mb(worker, concurrency if profile.pool == "prefork" else 0)
        finally:
            worker.stop()


def settled_rss_mb(worker: Worker, children: int) -> dict[str, float]:
    """Each process's VmRSS once all ``children`` exist and two readings a second apart agree within 1 %."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    previous: dict[str, float] = {}
    while True:
        time.sleep(1.0)
        pids = [worker.process.pid, *pool_children(worker.process.pid)]
        current = {("main" if index == 0 else f"child {index}"): vm_rss_mb(pid) for index, pid in enumerate(pids)}
        settled = len(pids) == children + 1 and previous.keys() == current.keys()
        if settled and all(abs(current[name] - previous[name]) <= 0.01 * previous[name] for name in current):
            return current
        if time.monotonic() > deadline:
            raise RuntimeError(f"worker {worker.name} did not settle in {SETTLE_TIMEOUT_S:g}s: {current}")
        previous = current


def pool_children(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (a pool may fork from any of them)."""
    tasks = Path(f"/proc/{pid}/task")
    return sorted(int(child) for task in tasks.iterdir() for child in (task / "children").read_text().split())


def vm_rss_mb(pid: int) -> float:
    return memory_mb(pid, "VmRSS")


def memory_mb(pid: int, field: str) -> float:
    """A memory figure of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``: the peak RSS...) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # the kernel reports kB
    raise RuntimeError(f"no {field} for process {pid}")
