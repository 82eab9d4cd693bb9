"""Writes that ride with a task's stored result: held from task_prerun to task_postrun, taken by the store."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import redis
from celery import states
from redis.backoff import NoBackoff
from redis.retry import Retry

from stepper.celery import create_app
from stepper.config import load_config
from stepper.infra import result_riders
from stepper.infra.result_riders import Rider
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
    sentinel_managed = redis.Redis.from_url("redis://127.0.0.1:7000/0")
    sentinel_managed.connection_pool.service_name = "mymaster"  # type: ignore[attr-defined]
    assert result_riders.database(sentinel_managed) is None
    riders = [entry(redis.Redis.from_url("redis://127.0.0.1:7000/3"))]
    assert result_riders.all_in(riders, ("tcp", "127.0.0.1", 7000, 3))
    assert not result_riders.all_in(riders, ("tcp", "127.0.0.1", 7000, 0))
    assert not result_riders.all_in(riders, None)
