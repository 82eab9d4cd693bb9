"""Writes that ride with a task's stored result: held from task_prerun to task_postrun, taken by the store."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import redis
from celery import states
from kombu import Connection
from kombu.transport import redis as kombu_redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from stepper.celery import create_app
from stepper.config import load_config
from stepper.infra import result_riders
from stepper.infra.redis_transport import Transport
from stepper.infra.result_riders import Delivery, Rider
from tests.support.redis_server import RedisServer, free_port


@pytest.fixture
def backend(redis_server: RedisServer) -> object:
    config = load_config({"STEPPER_REDIS_URL": redis_server.url, "CELERY_CONFIG_MODULE": "absent_config"})
    return create_app(config).backend


@pytest.fixture
def held() -> Iterator[str]:
    """A task whose writes are held, as a worker holds them between task_prerun and task_postrun."""
    result_riders.hold("t-held")
    yield "t-held"
    result_riders.release("t-held")


@pytest.fixture
def same_database(redis_server: RedisServer, redis_client: redis.Redis) -> Iterator[redis.Redis]:
    """A client of the result backend's database, named as the backend names it (a host spelled differently is
    taken for another server)."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def entry(client: redis.Redis, key: str = "entry") -> Rider:
    return Rider(client, key, '{"result": 1}', 60_000, (f"{key}:flight",))


def refuse_direct_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(riders: list[Rider]) -> None:
        if riders:
            raise AssertionError(f"written outside the store script: {riders}")

    monkeypatch.setattr(result_riders, "write", refused)


def test_held_writes_go_in_the_store_script_before_the_result_is_published(
    backend: object, redis_client: redis.Redis, same_database: redis.Redis, held: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_client.set("entry:flight", b"t-held")
    assert result_riders.defer(held, entry(same_database))
    listener = redis_client.pubsub()  # type: ignore[no-untyped-call]
    listener.subscribe(f"celery-task-meta-{held}")
    assert listener.get_message(timeout=5) is not None
    refuse_direct_writes(monkeypatch)
    backend.store_result(held, {"answer": 1}, states.SUCCESS)  # type: ignore[attr-defined]
    assert listener.get_message(timeout=5) is not None  # published...
    assert redis_client.get("entry") == b'{"result": 1}'  # ...with the entry written and the claim released
    assert 0 < redis_client.pttl("entry") <= 60_000
    assert not redis_client.exists("entry:flight")
    assert result_riders.take(held) == []  # taken once
    listener.close()


def test_held_writes_are_written_even_when_a_success_is_kept(
    backend: object, redis_client: redis.Redis, same_database: redis.Redis, held: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.store_result(held, {"answer": 1}, states.SUCCESS)  # type: ignore[attr-defined]
    result_riders.defer(held, entry(same_database))
    refuse_direct_writes(monkeypatch)
    backend.store_result(held, ValueError("late"), states.FAILURE)  # type: ignore[attr-defined]
    assert redis_client.get("entry") == b'{"result": 1}'


def test_writes_for_another_database_are_written_before_the_store(
    backend: object, redis_server: RedisServer, redis_client: redis.Redis, held: str
) -> None:
    other = redis.Redis(host="127.0.0.1", port=redis_server.port, db=1)
    result_riders.defer(held, entry(other))
    backend.store_result(held, {"answer": 1}, states.SUCCESS)  # type: ignore[attr-defined]
    assert other.get("entry") == b'{"result": 1}'
    assert not redis_client.exists("entry")  # not in the result backend's database
    other.flushdb()
    other.close()


def test_writes_no_store_took_are_written_once_the_task_has_run(redis_client: redis.Redis) -> None:
    result_riders.hold("t-ignored")
    assert result_riders.defer("t-ignored", entry(redis_client))
    assert not redis_client.exists("entry")  # held
    result_riders.release("t-ignored")
    assert redis_client.get("entry") == b'{"result": 1}'
    assert not result_riders.defer("t-ignored", entry(redis_client, "again"))  # no longer held


def test_a_write_for_a_task_not_held_is_not_deferred(redis_client: redis.Redis) -> None:
    assert not result_riders.defer("t-elsewhere", entry(redis_client))


def test_a_cache_entry_that_cannot_be_written_does_not_fail_the_store(
    backend: object, redis_client: redis.Redis, held: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The answer is computed: a cache entry for another Redis that is down must not turn it into a failure."""
    unreachable = redis.Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
    result_riders.defer(held, entry(unreachable))
    with caplog.at_level(logging.WARNING, logger="stepper.infra.result_riders"):
        backend.store_result(held, {"answer": 1}, states.SUCCESS)  # type: ignore[attr-defined]
    assert json.loads(redis_client.get(f"celery-task-meta-{held}") or b"{}")["status"] == "SUCCESS"
    assert f"could not write 1 cache entries of task {held}" in caplog.text


def test_a_redis_error_at_release_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    unreachable = redis.Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
    result_riders.hold("t-down")
    result_riders.defer("t-down", entry(unreachable))
    with caplog.at_level(logging.WARNING, logger="stepper.infra.result_riders"):
        result_riders.release("t-down")
    assert "could not write 1 cache entries of task t-down" in caplog.text


def test_the_database_a_client_writes_to() -> None:
    assert result_riders.database(redis.Redis.from_url("redis://127.0.0.1:7000/3")) == ("tcp", "127.0.0.1", 7000, 3)
    assert result_riders.database(redis.Redis.from_url("unix:///run/redis.sock?db=2")) == ("unix", "/run/redis.sock", 2)
    not_managed = redis.Redis.from_url("redis://127.0.0.1:7000/0")
    not_managed.connection_pool.service_name = "mymaster"  # type: ignore[attr-defined]
    assert result_riders.database(not_managed) is None
    riders = [entry(redis.Redis.from_url("redis://127.0.0.1:7000/3"))]
    assert result_riders.all_in(riders, ("tcp", "127.0.0.1", 7000, 3))
    assert not result_riders.all_in(riders, ("tcp", "127.0.0.1", 7000, 0))
    assert not result_riders.all_in(riders, None)


def sentinel_client(sentinels: list[tuple[str, int]], db: int, service: str, *, master: bool = True) -> redis.Redis:
    """A client of ``service``'s master (or a replica) found through ``sentinels``; nothing connects yet."""
    manager: Any = Sentinel(sentinels, db=db)  # type: ignore[no-untyped-call]  # redis-py leaves Sentinel untyped
    client: redis.Redis = manager.master_for(service) if master else manager.slave_for(service)
    return client


def test_the_master_of_a_sentinel_service_is_one_database_whoever_asks_for_it() -> None:
    """The broker (kombu), the result backend (Celery) and stepper's state each make their own Sentinel client from
    the same URL; their masters are one database, so writes ride together there too."""
    sentinels = [("127.0.0.1", 26379), ("127.0.0.1", 26380)]
    master = result_riders.database(sentinel_client(sentinels, 2, "mymaster"))
    assert master == ("sentinel", "mymaster", (("127.0.0.1", 26379), ("127.0.0.1", 26380)), 2)
    assert result_riders.database(sentinel_client(list(reversed(sentinels)), 2, "mymaster")) == master
    assert result_riders.database(sentinel_client(sentinels, 3, "mymaster")) != master
    assert result_riders.database(sentinel_client(sentinels, 2, "other")) != master
    assert result_riders.database(sentinel_client(sentinels[:1], 2, "mymaster")) != master
    assert result_riders.database(sentinel_client(sentinels, 2, "mymaster", master=False)) is None  # no writes there


# The acknowledgement: a task message delivered by stepper's transport, removed by its task's stored SUCCESS


@pytest.fixture
def delivered(redis_server: RedisServer, redis_client: redis.Redis) -> Iterator[tuple[Any, Any]]:
    """A task message (headers as Celery's protocol 2 gives them) delivered by stepper's transport, unacknowledged;
    and its consumer's channel."""
    with Connection(redis_server.url, transport=Transport) as connection:
        queue = connection.SimpleQueue("riders")
        queue.put({"kwargs": {}}, headers={"id": "t-acked", "task": "stepper.chat"})
        message = queue.get(timeout=5)
        assert redis_client.hlen("unacked") == 1
        yield message, queue.consumer.channel
        queue.close()


def no_ack_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*_: Any, **__: Any) -> None:
        raise AssertionError("the acknowledgement went to Redis again")

    monkeypatch.setattr(kombu_redis.QoS, "_remove_from_indices", refused)


def test_a_stored_success_acknowledges_its_delivered_message(
    backend: object, redis_client: redis.Redis, delivered: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    message, channel = delivered
    backend.store_result("t-acked", {"answer": 1}, states.SUCCESS)  # type: ignore[attr-defined]
    assert redis_client.hlen("unacked") == 0 and redis_client.zcard("unacked_index") == 0
    no_ack_round_trip(monkeypatch)
    message.ack()  # Celery's acknowledgement, after the store: bookkeeping only
    channel.qos._flush()
    assert message.delivery_tag not in channel.qos._delivered
    assert not result_riders.acknowledged(message.delivery_tag)  # forgotten


def test_a_failure_leaves_the_acknowledgement_to_celery(
    backend: object, redis_client: redis.Redis, delivered: tuple[Any, Any]
) -> None:
    """After a FAILURE Celery may still reject or requeue the message: it stays unacknowledged until then."""
    message, _channel = delivered
    backend.store_result("t-acked", ValueError("no"), states.FAILURE)  # type: ignore[attr-defined]
    assert redis_client.hlen("unacked") == 1
    message.reject(requeue=True)
    assert redis_client.hlen("unacked") == 0 and redis_client.llen("riders") == 1  # back on its queue


def test_a_message_from_another_database_is_acknowledged_by_kombu(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    config = load_config({"STEPPER_REDIS_URL": redis_server.url, "CELERY_CONFIG_MODULE": "absent_config"})
    backend = create_app(config).backend
    with Connection(f"redis://127.0.0.1:{redis_server.port}/7", transport=Transport) as connection:
        broker = redis.Redis(host="127.0.0.1", port=redis_server.port, db=7)
        queue = connection.SimpleQueue("elsewhere")
        queue.put({"kwargs": {}}, headers={"id": "t-elsewhere-db", "task": "stepper.chat"})
        message = queue.get(timeout=5)
        backend.store_result("t-elsewhere-db", {"answer": 1}, states.SUCCESS)
        assert broker.hlen("unacked") == 1  # the store's script runs in database 0
        message.ack()
        assert broker.hlen("unacked") == 0
        queue.close()
        broker.flushdb()
        broker.close()


def test_registrations_are_forgotten_once_acknowledged() -> None:
    delivery = Delivery(("tcp", "127.0.0.1", 6379, 0), "unacked_index", "unacked", "tag-1")
    result_riders.delivered("t-forgotten", delivery)
    assert not result_riders.acknowledged("tag-1")
    assert result_riders.take_deliveries("t-forgotten", delivery.database) == []
    result_riders.delivered("t-taken", delivery)
    assert result_riders.take_deliveries("t-taken", ("tcp", "127.0.0.1", 6379, 1)) == []  # another database
    assert result_riders.take_deliveries("t-taken", delivery.database) == [delivery]
    result_riders.removed([delivery])
    assert result_riders.acknowledged("tag-1")
    assert not result_riders.acknowledged("tag-1")


def test_a_store_takes_deliveries_whose_records_are_confirmed() -> None:
    """The transport sends a delivery's record without waiting for it: the store that removes the delivery's
    entries must not run before the record is written."""
    confirmed: list[str] = []
    database = ("tcp", "127.0.0.1", 6379, 0)
    for tag, task_id in (("tag-mine", "t-confirmed"), ("tag-other", "t-other")):
        confirm = partial(confirmed.append, tag)
        result_riders.delivered(task_id, Delivery(database, "unacked_index", "unacked", tag, confirm))
    taken = result_riders.take_deliveries("t-confirmed", database)
    assert [delivery.delivery_tag for delivery in taken] == ["tag-mine"]
    assert confirmed == ["tag-mine"]
    assert result_riders.acknowledged("tag-other") is False


def test_a_closed_channel_leaves_nothing_for_a_store_to_acknowledge(redis_server: RedisServer) -> None:
    """kombu puts back what a closing channel delivered; a later store must not remove it again."""
    with Connection(redis_server.url, transport=Transport) as connection:
        queue = connection.SimpleQueue("closing")
        queue.put({"kwargs": {}}, headers={"id": "t-closed", "task": "stepper.chat"})
        database = result_riders.database(queue.consumer.channel._create_client())
        queue.get(timeout=5)
        queue.close()
    assert result_riders.take_deliveries("t-closed", database) == []
