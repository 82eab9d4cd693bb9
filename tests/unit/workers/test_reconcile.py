"""The in-flight journal on a real Redis: a message lost between its queue and a worker is published again,
one still waiting or finished is not."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from stepper.celery import create_app
from stepper.config import load_config
from stepper.infra import inflight, keys
from stepper.workers.reconcile import ReconcileDuty
from tests.support.redis_server import RedisServer

CHAT = {"messages": [{"role": "user", "content": "in flight"}]}
LEASE_S = 0.2


@pytest.fixture
def app(redis_client: redis.Redis, redis_server: RedisServer) -> Any:
    del redis_client  # emptied for this test
    return create_app(load_config({"STEPPER_REDIS_URL": redis_server.url, "CELERY_CONFIG_MODULE": "absent_config"}))


def queued(client: redis.Redis) -> list[bytes]:
    lists = [name for name in client.keys("chat*") if client.type(name) == b"list"]
    return [raw for name in lists for raw in client.lrange(name, 0, -1) if isinstance(raw, bytes)]


def lose_it(client: redis.Redis) -> None:
    """What a connection cut mid-BRPOP does: the message leaves its list and reaches nobody."""
    for name in client.keys("chat*"):
        if client.type(name) == b"list":
            client.delete(name)


def reconcile_twice(duty: ReconcileDuty) -> list[str]:
    """Two rounds a lease apart (the lock and the suspicion both last about a lease)."""
    first = duty.reconcile()
    time.sleep(LEASE_S + 0.05)
    return first + duty.reconcile()


def test_a_message_lost_in_flight_is_published_again_once(app: Any, redis_client: redis.Redis) -> None:
    result = app.send_task("stepper.chat", kwargs=CHAT)
    assert redis_client.zscore(keys.inflight_since(), result.id) is not None  # journaled when published
    lose_it(redis_client)
    duty = ReconcileDuty(app, "reconciler@host", LEASE_S, grace_s=0)
    assert reconcile_twice(duty) == [result.id]
    (again,) = queued(redis_client)
    assert result.id.encode() in again  # the same task id, so its producer's AsyncResult still answers
    time.sleep(LEASE_S + 0.05)
    assert reconcile_twice(duty) == []  # waiting in its queue again: not published a second time


def test_waiting_and_finished_messages_are_left_alone(app: Any, redis_client: redis.Redis) -> None:
    waiting = app.send_task("stepper.chat", kwargs=CHAT)
    finished = app.send_task("stepper.chat", kwargs=CHAT)
    app.backend.store_result(finished.id, {"kind": "chat"}, "SUCCESS")
    duty = ReconcileDuty(app, "reconciler@host", LEASE_S, grace_s=0)
    assert reconcile_twice(duty) == []
    assert len(queued(redis_client)) == 2
    assert inflight.message(redis_client, finished.id) is None  # forgotten: its result is stored
    assert inflight.message(redis_client, waiting.id) is not None


def test_a_young_entry_is_not_looked_for(app: Any, redis_client: redis.Redis) -> None:
    app.send_task("stepper.chat", kwargs=CHAT)
    lose_it(redis_client)
    assert reconcile_twice(ReconcileDuty(app, "reconciler@host", LEASE_S, grace_s=60)) == []
    assert queued(redis_client) == []


def test_a_revoked_message_is_not_brought_back(app: Any, redis_client: redis.Redis) -> None:
    result = app.send_task("stepper.chat", kwargs=CHAT)
    lose_it(redis_client)  # as a purge would, too
    result.revoke()
    assert reconcile_twice(ReconcileDuty(app, "reconciler@host", LEASE_S, grace_s=0)) == []
    assert queued(redis_client) == [] and inflight.message(redis_client, result.id) is None
