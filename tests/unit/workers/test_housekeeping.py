"""Delayed messages wait in Redis, not in a worker, and revokes outlive the workers: on a real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from celery.worker import state

from stepper.celery import create_app
from stepper.config import load_config
from stepper.infra import delayed, keys
from stepper.workers.housekeeping import DelayedDuty, Housekeeper, RevokesDuty, load_revokes
from tests.support.redis_server import RedisServer

CHAT = {"messages": [{"role": "user", "content": "later"}]}


@pytest.fixture
def app(redis_client: redis.Redis, redis_server: RedisServer) -> Any:
    del redis_client  # emptied for this test
    return create_app(load_config({"STEPPER_REDIS_URL": redis_server.url, "CELERY_CONFIG_MODULE": "absent_config"}))


@pytest.fixture
def forget_revokes() -> Iterator[None]:
    state.revoked.clear()
    yield
    state.revoked.clear()


def waiting(client: redis.Redis) -> int:
    """Messages on the chat queue, every priority level."""
    return sum(int(client.llen(name)) for name in client.keys("chat*") if client.type(name) == b"list")


def test_a_countdown_keeps_the_message_in_redis_until_it_is_due(app: Any, redis_client: redis.Redis) -> None:
    result = app.send_task("stepper.chat", kwargs=CHAT, countdown=1.2, priority="interactive")
    assert waiting(redis_client) == 0 and delayed.pending(redis_client) == 1
    duty = DelayedDuty(app)
    duty.tick()
    assert waiting(redis_client) == 0  # not due yet
    time.sleep(1.3)
    duty.tick()
    assert delayed.pending(redis_client) == 0 and redis_client.hlen(keys.delayed_messages()) == 0
    assert waiting(redis_client) == 1
    with app.connection_for_write() as connection:
        message = connection.default_channel.basic_get("chat", no_ack=True)
    assert message is not None
    assert message.headers["id"] == result.id  # the same task id the producer holds
    assert message.properties["priority"] == 0  # its priority kept


def test_an_eta_is_kept_too_and_a_short_countdown_goes_to_the_broker(app: Any, redis_client: redis.Redis) -> None:
    app.send_task("stepper.chat", kwargs=CHAT, eta=datetime.now(UTC) + timedelta(minutes=5))
    app.send_task("stepper.chat", kwargs=CHAT, countdown=0.2)  # Celery's own ETA: a worker holds it that briefly
    app.send_task("other_app.task", countdown=60)  # another app's tasks keep Celery's rules
    assert delayed.pending(redis_client) == 1
    assert waiting(redis_client) == 1


def test_a_task_revoked_while_delayed_is_never_published(
    app: Any, redis_client: redis.Redis, forget_revokes: None
) -> None:
    result = app.send_task("stepper.chat", kwargs=CHAT, countdown=1.0)
    result.revoke()
    time.sleep(1.1)
    DelayedDuty(app).tick()
    assert waiting(redis_client) == 0 and delayed.pending(redis_client) == 0
    assert result.state == "REVOKED"


def test_revokes_are_recorded_and_loaded_by_a_worker_that_starts_later(
    app: Any, redis_client: redis.Redis, forget_revokes: None
) -> None:
    app.control.revoke(["task-a", "task-b"])  # no worker is up to hear the broadcast
    assert redis_client.zcard(keys.revoked()) == 2
    assert load_revokes(app) == 2
    assert "task-a" in state.revoked and "task-b" in state.revoked
    duty = RevokesDuty(app)
    duty.tick()
    app.control.revoke("task-c")
    duty.tick()
    assert "task-c" in state.revoked


def test_a_failing_duty_is_retried_and_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        name, interval_s, calls = "broken duty", 1.0, 0

        def tick(self) -> None:
            self.calls += 1
            raise redis.ConnectionError("Redis is restarting")

    class Working:
        name, interval_s, calls = "working duty", 1.0, 0

        def tick(self) -> None:
            self.calls += 1

    broken, working = Broken(), Working()
    keeper = Housekeeper([broken, working])
    for second in range(3):
        keeper.run_due(1000.0 + second)
    assert (broken.calls, working.calls) == (3, 3)
    assert caplog.text.count("broken duty failed") == 1  # once per incident, not once per tick
