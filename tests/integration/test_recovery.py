"""Redis restarted and a worker SIGKILLed mid-batch: nothing is lost, nothing runs twice to completion, and
nothing waits the visibility timeout (an hour) in kombu's unacked hash."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from stepper.infra import delayed
from tests.integration.conftest import producer_app
from tests.support.providers import journal
from tests.support.redis_server import RedisServer
from tests.support.workers import Worker, start_worker

#: Short leases so a test sees the sweep; the default is 20 s.
LEASE_S = 3.0


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own (it gets restarted) with its append-only file on, as production runs it."""
    server = RedisServer(shutil.which("redis-server") or "redis-server", tmp_path / "redis", appendonly=True)
    server.directory.mkdir()
    server.start()
    yield server
    server.stop()


def journal_settings(path: Path) -> dict[str, Any]:
    return {
        "stepper_providers": {
            "journal": {
                "class": "tests.support.providers:JournalChat",
                "options": {"delay_s": 1.0, "journal": str(path)},
            }
        },
        "stepper_chains": {"chat": ["journal:journal-model"]},
        "stepper_recovery": {"lease_s": LEASE_S, "redis_wait_s": 30},
    }


def job(number: int) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"job {number}"}], "idempotency_key": f"job-{number}"}


@pytest.mark.parametrize(("pool", "concurrency"), [("threads", 4), ("prefork", 2)])
def test_a_redis_restart_mid_batch_loses_nothing_and_strands_nothing(
    durable_redis: RedisServer, tmp_path: Path, pool: str, concurrency: int
) -> None:
    url = durable_redis.url
    settings = journal_settings(tmp_path / "journal")
    worker = start_worker(url, tmp_path / "worker", settings, name="restart", pool=pool, concurrency=concurrency)
    try:
        app = producer_app(url)
        # Delayed messages (a countdown, as a broker retry has) wait in Redis, not in the worker (which would
        # drop them when its connection breaks): they must come through the crash with the AOF.
        scheduled = [app.send_task("stepper.chat", kwargs=job(n), countdown=6) for n in range(4)]
        assert delayed.pending(redis.Redis.from_url(url)) == 4
        running = [app.send_task("stepper.chat", kwargs=job(n)) for n in range(4, 16)]
        _wait_until(lambda: len(journal(tmp_path / "journal", "start")) >= concurrency + 2, timeout_s=30)  # mid-call
        durable_redis.crash_and_restart(down_s=2)

        answers = [result.get(timeout=60) for result in scheduled + running]
        assert [answer["output"]["message"]["content"].rsplit(" ", 2)[-2:] for answer in answers] == [
            ["job", str(n)] for n in range(16)
        ]
        finished = Counter(journal(tmp_path / "journal", "finish"))
        assert finished == Counter(f"job {n}" for n in range(16))  # each ran to completion exactly once
        client = redis.Redis.from_url(url)
        _wait_until(lambda: client.hlen("unacked") == 0, timeout_s=10)
        # The worker still consumes after the restart.
        assert app.send_task("stepper.chat", kwargs=job(99)).get(timeout=30)["provider"] == "journal"
    finally:
        worker.stop()


def test_messages_of_a_sigkilled_worker_run_on_another_within_a_lease(
    durable_redis: RedisServer, tmp_path: Path
) -> None:
    url, path = durable_redis.url, tmp_path / "journal"
    doomed = start_worker(url, tmp_path / "doomed", journal_settings(path), name="doomed", concurrency=2)
    survivor: Worker | None = None
    try:
        app = producer_app(url)
        results = [app.send_task("stepper.chat", kwargs=job(n)) for n in range(8)]
        _wait_until(lambda: len(journal(path, "start")) >= 2, timeout_s=30)
        os.kill(doomed.process.pid, signal.SIGKILL)  # the whole worker, mid-call: no ack, no restore
        doomed.process.wait()
        survivor = start_worker(url, tmp_path / "survivor", journal_settings(path), name="survivor", concurrency=4)

        answers = [result.get(timeout=60) for result in results]
        assert len(answers) == 8
        started, finished = Counter(journal(path, "start")), Counter(journal(path, "finish"))
        assert any(count > 1 for count in started.values())  # some calls were cut short by the kill...
        assert finished == Counter(f"job {n}" for n in range(8))  # ...and each job still finished exactly once
        assert "stranded message(s) back on their queues" in survivor.log()
    finally:
        doomed.stop()
        if survivor is not None:
            survivor.stop()


def _wait_until(condition: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)
