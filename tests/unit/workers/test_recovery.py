"""The recovery sweep on a real Redis: what is stranded goes back, what a live worker holds stays."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from stepper.celery import create_app
from stepper.config import load_config
from stepper.infra import keys
from stepper.workers.recovery import Recovery
from tests.support.redis_server import RedisServer

LEASE_S = 0.3
CHAT = {"messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def app(redis_client: redis.Redis, redis_server: RedisServer) -> Any:
    del redis_client  # emptied for this test
    return create_app(load_config({"STEPPER_REDIS_URL": redis_server.url, "CELERY_CONFIG_MODULE": "absent_config"}))


@pytest.fixture
def channel(app: Any) -> Iterator[Any]:
    with app.connection_for_write() as connection:
        yield connection.default_channel


def deliver(app: Any, channel: Any, task: str = "stepper.chat") -> str:
    """Publish one message and take it without acknowledging it, as a worker that then dies would."""
    app.send_task(task, kwargs=CHAT, queue="chat")
    message = channel.basic_get("chat", no_ack=False)
    assert message is not None
    return str(message.delivery_tag)


def sweep_after_the_lease(recovery: Recovery, channel: Any) -> list[str]:
    """Sweep once to mark suspects, wait out the lease (and the sweep lock), sweep again."""
    assert recovery.sweep(channel) == []
    time.sleep(LEASE_S + 0.05)
    return recovery.sweep(channel)


def test_a_message_no_lease_holds_goes_back_on_its_queue_after_a_lease(app: Any, channel: Any) -> None:
    tag = deliver(app, channel)
    assert channel.client.hlen("unacked") == 1

    assert sweep_after_the_lease(Recovery("sweeper@host", LEASE_S), channel) == [tag]

    assert channel.client.hlen("unacked") == 0
    again = channel.basic_get("chat", no_ack=True)
    assert again is not None and again.delivery_info["redelivered"] is True  # a stored result is reused


def test_a_message_a_live_worker_holds_stays(app: Any, channel: Any) -> None:
    tag = deliver(app, channel)
    Recovery("holder@host", lease_s=30).renew(channel.client, {tag})

    assert sweep_after_the_lease(Recovery("sweeper@host", LEASE_S), channel) == []
    assert channel.client.hlen("unacked") == 1


def test_an_expired_lease_no_longer_holds(app: Any, channel: Any) -> None:
    tag = deliver(app, channel)
    Recovery("dead@host", lease_s=0.1).renew(channel.client, {tag})
    time.sleep(0.15)  # the holder stopped renewing: it died

    assert sweep_after_the_lease(Recovery("sweeper@host", LEASE_S), channel) == [tag]


def test_another_apps_messages_keep_kombus_rules(app: Any, channel: Any) -> None:
    deliver(app, channel, task="billing.invoice")

    assert sweep_after_the_lease(Recovery("sweeper@host", LEASE_S), channel) == []
    assert channel.client.hlen("unacked") == 1


def test_one_worker_sweeps_at_a_time(app: Any, channel: Any) -> None:
    tag = deliver(app, channel)
    first, second = Recovery("first@host", LEASE_S), Recovery("second@host", LEASE_S)
    assert first.sweep(channel) == []
    run_id = channel.client.info("server")["run_id"]
    channel.client.hset(keys.recovery_suspects(run_id), tag, 0)  # suspect for ages...

    assert channel.client.get(keys.recovery_sweep_lock()) == b"first@host"
    assert second.sweep(channel) == []  # ...but the first sweeper holds the lock
    assert channel.client.hlen("unacked") == 1
