"""A producer subscribes to a task's result channel when it waits for the result, not as it sends the task; every
way of waiting still gets the result, whether it was stored before the wait began or after (real Redis; the
results are stored as a worker stores them, through the backend)."""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from celery import states

from stepper.celery import StepperCelery, create_app
from stepper.config import load_config
from tests.support.redis_server import RedisServer


def app_on(redis_server: RedisServer) -> StepperCelery:
    return create_app(load_config({"STEPPER_REDIS_URL": redis_server.url, "CELERY_CONFIG_MODULE": "absent_config"}))


def listeners(app: StepperCelery, client: redis.Redis, task_id: str) -> int:
    channel = app.backend.get_key_for_task(task_id)
    return int(dict(client.pubsub_numsub(channel))[channel])


def store_later(app: StepperCelery, task_id: str, value: Any, after_s: float = 0.3) -> threading.Thread:
    """Store ``value`` as the task's result from another thread, as a worker would, ``after_s`` from now."""

    def store() -> None:
        time.sleep(after_s)
        app.backend.store_result(task_id, value, states.SUCCESS)

    thread = threading.Thread(target=store)
    thread.start()
    return thread


def test_sending_a_task_subscribes_to_nothing_and_waiting_subscribes(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    app = app_on(redis_server)
    sent = app.send_task("tests.anything", kwargs={"n": 1})
    assert listeners(app, redis_client, sent.id) == 0
    waiter = threading.Thread(target=lambda: sent.get(timeout=10))
    waiter.start()
    deadline = time.monotonic() + 10
    while listeners(app, redis_client, sent.id) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert listeners(app, redis_client, sent.id) == 1
    app.backend.store_result(sent.id, {"n": 1}, states.SUCCESS)
    waiter.join(timeout=10)
    assert not waiter.is_alive()


def test_a_result_stored_before_the_wait_is_got(redis_server: RedisServer) -> None:
    app = app_on(redis_server)
    sent = app.send_task("tests.anything")
    app.backend.store_result(sent.id, {"answer": 42}, states.SUCCESS)
    assert sent.get(timeout=5) == {"answer": 42}


def test_a_result_stored_while_waiting_is_got(redis_server: RedisServer) -> None:
    app = app_on(redis_server)
    sent = app.send_task("tests.anything")
    storing = store_later(app, sent.id, {"answer": 7})
    assert sent.get(timeout=10) == {"answer": 7}
    storing.join()


def test_then_on_a_task_that_finished_already_calls_back_at_once(redis_server: RedisServer) -> None:
    """Its result was published while nobody listened: it is read from the store."""
    app = app_on(redis_server)
    sent = app.send_task("tests.anything")
    app.backend.store_result(sent.id, {"answer": 3}, states.SUCCESS)
    called: list[Any] = []
    sent.then(lambda result: called.append(result.result))
    assert called == [{"answer": 3}]


def test_a_result_set_joined_natively_gets_results_stored_before_and_during_the_wait(
    redis_server: RedisServer,
) -> None:
    app = app_on(redis_server)
    first, second = app.send_task("tests.anything"), app.send_task("tests.anything")
    app.backend.store_result(first.id, 1, states.SUCCESS)
    storing = store_later(app, second.id, 2)
    assert app.ResultSet([first, second]).join_native(timeout=10) == [1, 2]
    storing.join()
