"""Chaos scenarios through real processes: a backlog on a durable broker (redis-server with AOF, or a RabbitMQ
node with durable queues, results and state then on the redis-server), a real worker whose provider writes a
journal (never Redis), and faults injected into the broker mid-backlog. Used by the integration tests (few
trials) and by ``make chaos`` (many). Every task is counted at the provider: lost, or run more than once."""

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
from stepper.ops.fleet import queue_depths
from tests.support.providers import journal
from tests.support.rabbitmq_server import RabbitMQServer
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

#: The same faults on RabbitMQ: a clean stop (SIGTERM), a crash (SIGKILL), every connection closed by the broker.
RABBITMQ_FAULTS: dict[str, Callable[[RabbitMQServer], None]] = {
    "shutdown": lambda server: server.restart(crash=False),
    "crash": lambda server: server.restart(crash=True),
    "client-kill": lambda server: server.ctl("close_all_connections", "chaos"),
}
BROKERS = ("redis", "rabbitmq")


@dataclass(frozen=True)
class Outcome:
    fault: str
    pool: str
    broker: str
    tasks: int
    lost: int
    duplicated: int
    restarts: int  # workers that exited (their watchdog, a crash) and were started again
    recovered: int  # messages lost in flight and published again from the in-flight journal
    stalled: bool  # messages still waiting on the queue, with a worker alive, after DRAIN_TIMEOUT_S
    seconds: float


def run(fault: str, pool: str, tasks: int, faults: int, directory: Path, *, broker: str = "redis") -> Outcome:
    """One trial: ``tasks`` jobs, ``faults`` faults of the broker spread over the backlog, a supervisor that
    restarts an exited worker (as ``stepper fleet up`` does)."""
    started = time.monotonic()
    server = RedisServer(shutil.which("redis-server") or "redis-server", directory / "redis", appendonly=True)
    server.directory.mkdir(parents=True)
    server.start()
    rabbitmq = RabbitMQServer(directory / "rabbitmq") if broker == "rabbitmq" else None
    environ = {"STEPPER_REDIS_URL": server.url, "CELERY_CONFIG_MODULE": "chaos_absent"}
    if rabbitmq is not None:
        rabbitmq.start()
        environ["STEPPER_BROKER_URL"] = rabbitmq.url(1)
    inject: Callable[[], None] = (
        (lambda: RABBITMQ_FAULTS[fault](rabbitmq)) if rabbitmq is not None else (lambda: FAULTS[fault](server))
    )
    path = directory / "journal"
    broker_env = {"STEPPER_BROKER_URL": environ["STEPPER_BROKER_URL"]} if rabbitmq is not None else {}
    supervisor = Supervisor(server.url, directory, _settings(path), fault, pool, broker_env)
    try:
        app = create_app(load_config(environ))
        expected = [f"job {n}" for n in range(tasks)]
        for number in range(tasks):
            app.send_task("stepper.chat", kwargs=_job(number))
        for number in range(1, faults + 1):
            supervisor.wait_for(_finished_at_least(path, tasks * number // (faults + 1)), DRAIN_TIMEOUT_S)
            inject()
        supervisor.wait_for(lambda: set(expected) <= set(journal(path, "finish")), DRAIN_TIMEOUT_S)
        finished = Counter(journal(path, "finish"))
        done = set(finished) & set(expected)
        return Outcome(
            fault=fault,
            pool=pool,
            broker=broker,
            tasks=tasks,
            lost=tasks - len(done),
            duplicated=sum(count - 1 for count in finished.values() if count > 1),
            restarts=len(supervisor.workers) - 1,
            recovered=supervisor.recovered(),
            stalled=_waiting(app, server) > 0 and supervisor.workers[-1].process.poll() is None,
            seconds=round(time.monotonic() - started, 1),
        )
    finally:
        supervisor.stop()
        server.stop()
        if rabbitmq is not None:
            rabbitmq.stop()


def _waiting(app: Any, server: RedisServer) -> int:
    """Messages waiting on the chat queue (every priority level) and kept for later."""
    return sum(queue_depths(app, ["chat"])["chat"].values()) + delayed.pending(server.client())


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

    def __init__(  # noqa: PLR0917  (what each worker it starts gets)
        self, url: str, directory: Path, settings: dict[str, Any], fault: str, pool: str, env: dict[str, str]
    ) -> None:
        self.url, self.directory, self.settings, self.fault, self.pool = url, directory, settings, fault, pool
        self.env = env
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
            start_worker(
                self.url, directory, self.settings, name=name, pool=self.pool, concurrency=concurrency, env=self.env
            )
        )
