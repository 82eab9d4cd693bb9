"""stepper's Redis result backend: Celery's rules for storing a result, in one round trip."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import redis
from celery import __version__ as celery_version
from celery import states

from stepper.celery import StepperCelery, create_app
from stepper.config import load_config
from stepper.infra import result_backend
from stepper.infra.result_backend import RedisBackend
from tests.support.redis_server import RedisServer


def app_on(redis_server: RedisServer, **settings: Any) -> StepperCelery:
    config = load_config({"STEPPER_REDIS_URL": redis_server.url, "CELERY_CONFIG_MODULE": "absent_config"})
    return create_app({**config, **settings})


def stored(client: redis.Redis, task_id: str) -> dict[str, Any]:
    raw = client.get(f"celery-task-meta-{task_id}")
    assert raw is not None
    meta: dict[str, Any] = json.loads(raw)
    return meta


def test_a_result_is_stored_with_its_expiry_and_published(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    app = app_on(redis_server)
    assert isinstance(app.backend, RedisBackend)
    listener = redis_client.pubsub()  # type: ignore[no-untyped-call]
    listener.subscribe("celery-task-meta-t1")
    assert listener.get_message(timeout=5) is not None  # the subscription's confirmation
    app.backend.store_result("t1", {"answer": 42}, states.SUCCESS)
    meta = stored(redis_client, "t1")
    assert (meta["status"], meta["result"], meta["task_id"]) == ("SUCCESS", {"answer": 42}, "t1")
    assert 0 < redis_client.ttl("celery-task-meta-t1") <= app.conf.result_expires
    published = listener.get_message(timeout=5)
    assert published is not None and json.loads(published["data"])["result"] == {"answer": 42}
    listener.close()
    assert app.AsyncResult("t1").get(timeout=5) == {"answer": 42}


def test_a_success_is_never_overwritten_by_a_late_update(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """Celery's rule (a lost worker's redelivered task failing after the first run succeeded): kept atomically."""
    backend = app_on(redis_server).backend
    backend.store_result("t2", None, states.RETRY)
    assert stored(redis_client, "t2")["status"] == "RETRY"
    backend.store_result("t2", {"answer": 1}, states.SUCCESS)
    backend.store_result("t2", ValueError("late"), states.FAILURE)
    backend.store_result("t2", {"answer": 2}, states.SUCCESS)
    assert (stored(redis_client, "t2")["status"], stored(redis_client, "t2")["result"]) == ("SUCCESS", {"answer": 1})


def test_a_failure_keeps_the_failure_expiry(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    backend = app_on(redis_server, result_failure_expires=60).backend
    backend.store_result("t3", ValueError("no"), states.FAILURE)
    assert stored(redis_client, "t3")["status"] == "FAILURE"
    assert 0 < redis_client.ttl("celery-task-meta-t3") <= 60


def test_compressed_results_are_stored_celerys_way(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """The script reads the stored status as JSON: a compressed backend keeps Celery's GET-then-store."""
    app = app_on(redis_server, result_compression="gzip")
    app.backend.store_result("t4", {"answer": 4}, states.SUCCESS)
    app.backend.store_result("t4", ValueError("late"), states.FAILURE)
    assert app.AsyncResult("t4").result == {"answer": 4}
    raw = redis_client.get("celery-task-meta-t4")
    assert isinstance(raw, bytes) and not raw.startswith(b"{")  # really compressed


def test_backends_built_per_thread_read_the_driver_version_once_and_still_name_celery(
    redis_server: RedisServer,
) -> None:
    """Celery builds a backend per thread (per task under gevent); redis-py's DriverInfo reads its version from
    the package's metadata each time, which cost most of building one."""
    app = app_on(redis_server)
    built: list[Any] = []
    for _ in range(2):
        reader = threading.Thread(target=lambda: built.append(app.backend))
        reader.start()
        reader.join()
    first, second = built
    assert first is not second
    assert first.connparams["driver_info"] is second.connparams["driver_info"]
    assert second.connparams["driver_info"].formatted_name.endswith(f"(celery_v{celery_version})")
    assert second.client.ping()


def test_in_a_worker_the_backends_of_an_app_share_one_client(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(result_backend, "_shared", None)
    app, other = app_on(redis_server), app_on(redis_server)
    own = app.backend.client  # this thread's backend, built before sharing: a client of its own, as Celery's
    result_backend.share_clients()
    clients: list[redis.Redis] = []
    for owner in (app, app, other):
        reader = threading.Thread(target=lambda owner=owner: clients.append(owner.backend.client))
        reader.start()
        reader.join()
    assert clients[0] is clients[1]
    assert clients[0] is not own
    assert clients[2] is not clients[0]  # another app: its own settings, its own client
    app.backend.store_result("shared", {"answer": 42}, states.SUCCESS)
    assert app.AsyncResult("shared").get(timeout=5) == {"answer": 42}


def _subscribers(client: redis.Redis, task_id: str) -> int:
    channel = f"celery-task-meta-{task_id}"
    return int(dict(client.pubsub_numsub(channel))[channel.encode()])


def test_a_task_sent_unsubscribed_is_not_listened_for_and_its_result_still_read(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """Celery subscribes to a task's result channel as it sends it; not in ``unsubscribed()``, and a ``get()``
    later still finds a result stored before it (the gateway's streamed chats are sent so)."""
    app = app_on(redis_server)
    watched = app.send_task("stepper.chat", kwargs={}, queue="nobody-consumes")
    assert _subscribers(redis_client, watched.id) == 1
    with result_backend.unsubscribed():
        unwatched = app.send_task("stepper.chat", kwargs={}, queue="nobody-consumes")
    assert _subscribers(redis_client, unwatched.id) == 0
    app.backend.store_result(unwatched.id, {"answer": 7}, states.SUCCESS)
    assert app.AsyncResult(unwatched.id).get(timeout=5) == {"answer": 7}
    later = app.send_task("stepper.chat", kwargs={}, queue="nobody-consumes")
    assert _subscribers(redis_client, later.id) == 1  # the block's end restores Celery's way
