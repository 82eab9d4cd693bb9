"""Redis Sentinel: the master is SIGKILLed mid-backlog, the replica is promoted, and the workers and producers
(broker, result backend and state all through ``sentinel://``) follow it; every task finishes.

What a failover can lose is what the master had acknowledged but not yet sent to the replica (Redis replicates
asynchronously): the test measures that lag at the moment of the kill, and stepper's in-flight journal and
recovery sweep bring back what was lost in it (README, "Which broker when")."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from hashlib import sha1
from pathlib import Path
from typing import Any

import pytest

from stepper.infra import lua
from stepper.infra.connections import client_for
from tests.integration.conftest import producer_app
from tests.support.chaos import Supervisor
from tests.support.monitor import monitored
from tests.support.providers import journal, journal_settings
from tests.support.sentinel import SentinelGroup
from tests.support.workers import start_worker

BEFORE, AFTER = 30, 10


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = SentinelGroup(shutil.which("redis-server") or "redis-server", tmp_path / "sentinel")
    group.directory.mkdir()
    try:
        group.start()
        yield group
    finally:
        group.stop()


def settings(path: Path) -> dict[str, Any]:
    return journal_settings(path, 0.1, {"lease_s": 3.0, "inflight_grace_s": 6.0})


def job(number: int) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"job {number}"}]}


def test_a_failover_mid_backlog_loses_no_task(sentinel_group: SentinelGroup, tmp_path: Path) -> None:
    path = tmp_path / "journal"
    url = sentinel_group.url
    # Restarts a worker that exits (its watchdog: it stopped consuming), as stepper fleet up or Kubernetes would.
    supervisor = Supervisor(url, tmp_path, settings(path), "sentinel", "threads", {})
    try:
        app = producer_app(url)
        results = [app.send_task("stepper.chat", kwargs=job(n)) for n in range(BEFORE)]
        supervisor.wait_for(lambda: len(journal(path, "finish")) >= 3, 30)
        lag_bytes = sentinel_group.replication_lag_bytes()
        sentinel_group.kill_master()
        failover_s = sentinel_group.wait_for_failover()
        # Producers follow the promoted replica: the state's client and the broker's connections ask the sentinels.
        results += [app.send_task("stepper.chat", kwargs=job(n)) for n in range(BEFORE, BEFORE + AFTER)]
        supervisor.wait_for(lambda: len(set(journal(path, "finish"))) == BEFORE + AFTER, 120)
        answers = [result.get(timeout=30) for result in results]

        assert all(answer["provider"] == "journal" for answer in answers)
        finished = Counter(journal(path, "finish"))
        assert set(finished) == {f"job {n}" for n in range(BEFORE + AFTER)}  # every task finished
        assert client_for(url).info("server")["tcp_port"] == sentinel_group.replica.port  # type: ignore[union-attr]
        print(f"failover took {failover_s:.1f}s; the replica was at most {lag_bytes} bytes behind at the kill; "
              f"{sum(count - 1 for count in finished.values())} task(s) ran twice; "
              f"{len(supervisor.workers) - 1} worker restart(s)")  # fmt: skip
    finally:
        supervisor.stop()


def test_through_sentinel_a_chat_makes_the_round_trips_it_makes_on_redis(
    sentinel_group: SentinelGroup, tmp_path: Path
) -> None:
    """Writes ride together when they go to one database: the journal entry with the message, the admission with
    the cache probe, the cache entry and the acknowledgement with the result. Each client (kombu's, Celery's,
    stepper's) makes its own Sentinel client from the URL, and their masters used to count as different
    databases, so on Sentinel every one of those writes went in a round trip of its own. Counted on the master
    with MONITOR, for chats that miss the cache."""
    mock = {"class": "stepper.providers.mock:MockProvider", "rpm": 100_000, "tpm": 10_000_000}
    settings = {"stepper_mode": "mock", "stepper_providers": {"mock": mock}}
    worker = start_worker(sentinel_group.url, tmp_path / "worker", settings, name="sentinel-rides", queues=["chat"])
    try:
        app = producer_app(sentinel_group.url)

        def chat(content: str) -> dict[str, Any]:
            request = {"messages": [{"role": "user", "content": content}], "temperature": 0}
            answer: dict[str, Any] = app.send_task("stepper.chat", kwargs=request).get(timeout=60)
            return answer

        chat("warm")
        assert sentinel_group.master is not None
        with monitored(sentinel_group.master.client()) as seen:
            answers = [chat(f"miss #{index}") for index in range(10)]
    finally:
        worker.stop()
    assert [answer["cached"] for answer in answers] == [False] * 10
    sent = [command["command"] for command in seen if command["client_type"] != "lua"]
    alone = sha1(lua.source("admission", "admit").encode()).hexdigest()
    assert not [command for command in sent if command.startswith(("LPUSH ", f"EVALSHA {alone} "))]
    assert not [command for command in sent if command.startswith(("HDEL unacked ", "SET stepper:cache:"))]
