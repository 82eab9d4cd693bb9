"""Finished tasks leave the in-flight journal in batches, on a real Redis."""

from __future__ import annotations

import time

import pytest
import redis

from stepper.infra import inflight, keys
from stepper.infra.delayed import DelayedMessage


def journal(client: redis.Redis, task_ids: list[str]) -> None:
    for task_id in task_ids:
        message = DelayedMessage(name="stepper.chat", args=[], kwargs={}, options={"task_id": task_id})
        inflight.record(client, task_id, message.to_json())


def exec_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats").get("cmdstat_exec", {})
    return int(stats.get("calls", 0))


def test_ids_finished_together_leave_in_one_transaction(redis_client: redis.Redis) -> None:
    journal(redis_client, ["a", "b", "c", "kept"])
    before = exec_calls(redis_client)
    forgetter = inflight.Forgetter(redis_client)
    for task_id in ("a", "b", "c"):
        forgetter.add(task_id)
    deadline = time.monotonic() + 10
    while redis_client.hlen(keys.inflight_messages()) > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert redis_client.hkeys(keys.inflight_messages()) == [b"kept"]
    assert redis_client.zrange(keys.inflight_since(), 0, -1) == [b"kept"]
    assert exec_calls(redis_client) - before == 1


def test_flush_forgets_at_once(redis_client: redis.Redis) -> None:
    journal(redis_client, ["a"])
    inflight.forget_soon(redis_client, "a")
    inflight.flush_forgotten()
    assert inflight.message(redis_client, "a") is None


def test_a_redis_error_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    unreachable = redis.Redis(port=1, socket_connect_timeout=0.2)
    forgetter = inflight.Forgetter(unreachable)
    forgetter.add("a")
    forgetter.flush()  # the reconciliation forgets a task whose result is stored
    assert "could not take 1 finished task(s) out of the in-flight journal" in caplog.text
