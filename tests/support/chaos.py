"""Chaos scenarios through real processes: a backlog on a durable redis-server, a real worker whose provider
writes a journal (never Redis), and faults injected mid-backlog. Used by the integration tests (few trials)
and by ``make chaos`` (many). Every task is counted at the provider: lost, or run more than once."""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from stepper.celery import create_app
from stepper.config import load_config
from stepper.infra import delayed
from stepper.ops.fleet import redis_queue_depths
from tests.support.providers import journal
from tests.support.redis_server import RedisServer
from tests.support.workers import Worker, start_worker

#: The reconciliation's log line (stepper.workers.reconcile).
RECOVERED = re.compile(r"published (\d+) lost message\(s\) again")
#: Seconds a backlog may take to drain after the last fault before the run counts as stalled.
DRAIN_TIMEOUT_S = 120.0


def restart_cleanly(server: RedisServer) -> None:
    """SHUTDOWN (the AOF flushed, clients told), two seconds down, then up again on the same files."""
    with contextlib.suppress(redis.ConnectionError):  # the server closes the connection as it goes
        server.client().shutdown(nosave=True)
    assert server.process is not None
    server.process.wait(timeout=10)
    time.sleep(2)
    server.start()


def kill_connections(server: RedisServer) -> None:
    """Reset every client connection while Redis stays up (CLIENT KILL), as a proxy or a failover might."""
    server.client().client_kill_filter(_type="normal", skipme=True)


FAULTS: dict[str, Callable[[RedisServer], None]] = {
    "shutdown": restart_cleanly,
    "crash": lambda server: server.crash_and_restart(down_s=2),
    "client-kill": kill_connections,
}


@dataclass(frozen=True)
class Outcome:
    fault: str
    pool: str
    tasks: int
    lost: int
    duplicated: int
    restarts: int  # workers that exited (their watchdog, a crash) and were started again
    recovered: int  # messages lost in flight and published again from the in-flight journal
    stalled: bool  # messages still waiting on the queue, with a worker alive, after DRAIN_TIMEOUT_S
    seconds: float


def run(fault: str, pool: str, tasks: int, faults: int, directory: Path) -> Outcome:
    """One trial: ``tasks`` jobs, ``faults`` faults spread over the backlog, a supervisor that restarts an
    exited worker (as ``stepper fleet up`` does)."""
    started = time.monotonic()
    server = RedisServer(shutil.which("redis-server") or "redis-server", directory / "redis", appendonly=True)
    server.directory.mkdir(parents=True)
    server.start()
    path = directory / "journal"
    supervisor = Supervisor(server.url, directory, _settings(path), fault, pool)
    try:
        app = create_app(load_config({"STEPPER_REDIS_URL": server.url, "CELERY_CONFIG_MODULE": "chaos_absent"}))
        expected = [f"job {n}" for n in range(tasks)]
        for number in range(tasks):
            app.send_task("stepper.chat", kwargs=_job(number))
        for number in range(1, faults + 1):
            supervisor.wait_for(_finished_at_least(path, tasks * number // (faults + 1)), DRAIN_TIMEOUT_S)
            FAULTS[fault](server)
        supervisor.wait_for(lambda: set(expected) <= set(journal(path, "finish")), DRAIN_TIMEOUT_S)
        finished = Counter(journal(path, "finish"))
        done = set(finished) & set(expected)
        return Outcome(
            fault=fault,
            pool=pool,
            tasks=tasks,
            lost=tasks - len(done),
            duplicated=sum(count - 1 for count in finished.values() if count > 1),
            restarts=len(supervisor.workers) - 1,
            recovered=supervisor.recovered(),
            stalled=_waiting(server) > 0 and supervisor.workers[-1].process.poll() is None,
            seconds=round(time.monotonic() - started, 1),
        )
    finally:
        supervisor.stop()
        server.stop()


def _waiting(server: RedisServer) -> int:
    """Messages on the chat queue's lists (every priority level) and kept for later."""
    return sum(redis_queue_depths(server.client(), ["chat"])["chat"].values()) + delayed.pending(server.client())


def _finished_at_least(path: Path, count: int) -> Callable[[], bool]:
    return lambda: len(journal(path, "finish")) >= count


def _settings(path: Path) -> dict[str, Any]:
    return {
        "stepper_providers": {
            "journal": {
                "class": "tests.support.providers:JournalChat",
                "options": {"delay_s": 0.02, "journal": str(path)},
            }
        },
        "stepper_chains": {"chat": ["journal:journal-model"]},
        "stepper_recovery": {"lease_s": 3, "redis_wait_s": 30, "stall_s": 10, "inflight_grace_s": 5},
    }


def _job(number: int) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"job {number}"}], "idempotency_key": f"job-{number}"}


class Supervisor:
    """Starts the worker, and starts it again whenever it exits, as ``stepper fleet up`` or Kubernetes would."""

    def __init__(self, url: str, directory: Path, settings: dict[str, Any], fault: str, pool: str) -> None:
        self.url, self.directory, self.settings, self.fault, self.pool = url, directory, settings, fault, pool
        self.workers: list[Worker] = []
        self._start()

    def wait_for(self, condition: Callable[[], bool], timeout_s: float) -> None:
        """Supervise until ``condition`` holds or ``timeout_s`` passes (the caller then counts what is missing)."""
        deadline = time.monotonic() + timeout_s
        while not condition() and time.monotonic() < deadline:
            if self.workers[-1].process.poll() is not None:
                self._start()
            time.sleep(0.2)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def recovered(self) -> int:
        """Messages the workers' reconciliation published again (from their logs)."""
        found = (RECOVERED.findall(worker.log()) for worker in self.workers)
        return sum(int(count) for counts in found for count in counts)

    def _start(self) -> None:
        concurrency = 4 if self.pool == "threads" else 2
        directory = self.directory / f"worker-{len(self.workers)}"
        name = f"chaos-{self.fault}"
        self.workers.append(
            start_worker(self.url, directory, self.settings, name=name, pool=self.pool, concurrency=concurrency)
        )
