"""Calls in flight per worker process: throughput, CPU per call and memory over concurrency x vendor latency.

For each pool (threads, gevent), concurrency (calls in flight per process) and vendor latency, one stepper
worker (live, a chat chain of one OpenAI-compatible provider pointed at bench/fake_openai.py) and one bare
Celery worker posting the same JSON with ``requests`` (bench/bare_io_app.py, its pools sized for the
concurrency) each run a backlog of ``WAVES`` x concurrency chats, one after the other on the same machine.

Each side's throughput is reported as a fraction of what bounds it: ``min(concurrency / latency, 1 / CPU per
call)``, the second being the rate one core's worth of Python sustains at the CPU per call measured in that run
(a worker process is one interpreter). Also reported: CPU ms per call (the worker process's user + system
time over the tasks), peak RSS (``VmHWM``), and errors (failed tasks, and connection faults in the worker's log).

The grid is ``BENCH_CONCURRENCY`` x ``BENCH_LATENCY_S`` x ``BENCH_POOLS`` (comma-separated; defaults below).
Target (performance issue): at 1,000 in flight and 1 s latency, at least 0.9x the bare peer's throughput on
the same pool, zero errors, RSS at most 250 MB.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from celery import Celery

from bench.fake_openai import API_KEY
from bench.harness import Figure, compare, cpu_seconds, fleet, progress
from bench.io_fleet import KEY_ENV, bare_io_worker, chat_request, fake_provider, stepper_settings
from bench.memory import memory_mb
from stepper.workers.profiles import PROFILES
from tests.support.redis_server import RedisServer
from tests.support.workers import Worker

CONCURRENCY = (32, 128, 512, 1000)
LATENCY_S = (0.1, 1.0, 5.0)
POOLS = ("threads", "gevent")
WAVES = 3
TARGET_RATIO = 0.9
TARGET_RSS_MB = 250
#: Lines in a worker's log that mean a connection pool or poller gave out.
FAULTS = ("MaxConnectionsError", "Couldn't ack", "Unrecoverable error", "filedescriptor out of range")


@dataclass
class Side:
    per_second: float
    cpu_ms_per_call: float
    rss_mb: float
    errors: int

    def bound_per_second(self, concurrency: int, latency_s: float) -> float:
        return min(concurrency / latency_s, 1000 / self.cpu_ms_per_call)


def grid(name: str, default: tuple[Any, ...], cast: type) -> tuple[Any, ...]:
    value = os.environ.get(name)
    return tuple(cast(item) for item in value.split(",")) if value else default


def backlog(app: Celery, task: str, worker: Worker, label: str, tasks: int) -> Side:
    """Send ``tasks`` chats, await them all; the worker's CPU and memory over that time."""
    pid = worker.process.pid
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    pending = [app.send_task(task, kwargs=chat_request(label, index)) for index in range(tasks)]
    errors = 0
    for result in pending:
        try:
            result.get(timeout=600)
        except Exception:  # noqa: BLE001  (a failed task is counted, not raised: the run reports errors)
            errors += 1
    seconds = time.perf_counter() - started
    cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / tasks
    errors += sum(worker.log().count(fault) for fault in FAULTS)
    return Side(tasks / seconds, cpu_ms, memory_mb(pid, "VmHWM"), errors)


def point(redis: RedisServer, base_url: str, pool: str, concurrency: int, latency_s: float) -> dict[str, Any]:
    tasks = WAVES * concurrency
    redis.client().flushall()
    options = {"pool": pool, "concurrency": concurrency, "queues": list(PROFILES["llm"].queues)}
    settings = stepper_settings(base_url)
    with fleet(redis, 8, settings, name="bench-curve", env={KEY_ENV: API_KEY}, **options) as (app, worker):
        stepper = backlog(app, "stepper.chat", worker, f"curve {pool} {concurrency}", tasks)
    with bare_io_worker(redis, 9, base_url, pool, concurrency) as (app, worker):
        bare = backlog(app, "bare.chat", worker, f"bare {pool} {concurrency}", tasks)
    ratio = stepper.per_second / bare.per_second
    progress(
        f"concurrency: {pool} x{concurrency} at {latency_s:g} s: stepper {stepper.per_second:.0f}/s "
        f"({stepper.cpu_ms_per_call:.1f} ms CPU, {stepper.rss_mb:.0f} MB, {stepper.errors} errors), bare "
        f"{bare.per_second:.0f}/s ({bare.cpu_ms_per_call:.1f} ms CPU, {bare.rss_mb:.0f} MB, {bare.errors} errors)"
    )
    headline = concurrency >= 1000 and latency_s == 1.0
    met = ratio >= TARGET_RATIO and stepper.errors == 0 and (not headline or stepper.rss_mb <= TARGET_RSS_MB)
    return compare(
        Figure(f"stepper.chat ({pool} x{concurrency}, vendor {latency_s:g} s)", stepper.per_second, "tasks/s"),
        Figure(f"bare.chat ({pool} x{concurrency}, requests)", bare.per_second, "tasks/s"),
        f">= {TARGET_RATIO}x, zero errors" + (f", RSS <= {TARGET_RSS_MB} MB" if headline else ""),
        met,
        fraction_of_bound={
            "stepper": round(stepper.per_second / stepper.bound_per_second(concurrency, latency_s), 2),
            "bare": round(bare.per_second / bare.bound_per_second(concurrency, latency_s), 2),
        },
        cpu_ms_per_call={"stepper": round(stepper.cpu_ms_per_call, 2), "bare": round(bare.cpu_ms_per_call, 2)},
        peak_rss_mb={"stepper": round(stepper.rss_mb), "bare": round(bare.rss_mb)},
        errors={"stepper": stepper.errors, "bare": bare.errors},
    )


def run(redis: RedisServer) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    pools = grid("BENCH_POOLS", POOLS, str)
    concurrencies = grid("BENCH_CONCURRENCY", CONCURRENCY, int)
    latencies = grid("BENCH_LATENCY_S", LATENCY_S, float)
    progress(f"concurrency: {len(pools) * len(concurrencies) * len(latencies)} points, {WAVES} waves each, "
             "stepper then bare Celery, on a fake vendor per latency")  # fmt: skip
    for latency_s in latencies:
        with fake_provider(latency_s) as base_url:
            for pool in pools:
                for concurrency in concurrencies:
                    name = f"curve.{pool}.c{concurrency}.{latency_s:g}s"
                    results[name] = point(redis, base_url, pool, concurrency, latency_s)
    return results
