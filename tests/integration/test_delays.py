"""Delayed work stays in Redis until it is due, and revokes outlive the workers: real workers and Redis."""

from __future__ import annotations

import time
from collections.abc import Callable

from celery.result import AsyncResult

from stepper.infra import delayed
from tests.integration.conftest import COUNTING_CHAINS, Fleet, producer_app
from tests.support.providers import calls
from tests.support.redis_server import RESERVED_DATABASES, RedisServer

HELLO = {"messages": [{"role": "user", "content": "hello"}]}


def test_a_countdown_flood_waits_in_redis_and_spreads_over_the_workers(start_fleet: Callable[..., Fleet]) -> None:
    first = start_fleet({"stepper_chains": COUNTING_CHAINS}, name="delays-a", concurrency=4)
    database = int(first.url.rsplit("/", 1)[1])
    start_fleet({"stepper_chains": COUNTING_CHAINS}, name="delays-b", concurrency=4, database=database)

    results = [first.app.send_task("stepper.chat", kwargs=HELLO, countdown=4) for _ in range(1000)]
    held = first.app.control.inspect(timeout=1.0).scheduled() or {}
    assert sum(len(tasks) for tasks in held.values()) == 0  # no worker holds the delayed messages
    assert delayed.pending(first.redis) == 1000

    assert all(result.get(timeout=120)["provider"] == "counting" for result in results)
    assert delayed.pending(first.redis) == 0
    served = {
        name: stats["total"].get("stepper.chat", 0) for name, stats in first.app.control.inspect().stats().items()
    }
    assert len(served) == 2 and all(count > 0 for count in served.values()), served  # both workers took a share


def test_a_task_revoked_while_no_worker_is_up_never_runs(
    start_fleet: Callable[..., Fleet], redis_server: RedisServer
) -> None:
    database = RESERVED_DATABASES["revokes"]
    url = f"redis://127.0.0.1:{redis_server.port}/{database}"
    producer = producer_app(url)
    doomed = producer.send_task("stepper.chat", kwargs=HELLO)
    producer.control.revoke(doomed.id)  # nobody hears the broadcast: no worker is up
    later = producer.send_task("stepper.chat", kwargs=HELLO, countdown=2)
    AsyncResult(later.id, app=producer).revoke()  # revoked during its countdown, still with no worker up

    fleet = start_fleet({"stepper_chains": COUNTING_CHAINS}, name="revokes", database=database)
    survivor = fleet.app.send_task("stepper.chat", kwargs=HELLO)
    assert survivor.get(timeout=30)["provider"] == "counting"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (doomed.state, later.state) != ("REVOKED", "REVOKED"):
        time.sleep(0.2)
    assert (doomed.state, later.state) == ("REVOKED", "REVOKED")
    assert calls(fleet.redis, "counting") == 1  # only the survivor reached the provider
