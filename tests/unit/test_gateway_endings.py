"""Silent streams asking whether their tasks ended without writing them, many at once, on a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from celery import states
from redis.exceptions import ConnectionError as RedisConnectionError

from stepper.celery import StepperCelery, create_app
from stepper.config import load_config
from stepper.errors import ChainExhausted
from stepper.gateway.endings import EndingChecks
from stepper.infra import revokes
from stepper.infra.streams import StreamEvent, done_event
from tests.support.monitor import monitored
from tests.support.redis_server import RedisServer
from tests.support.streaming import chat_result

ANSWER = chat_result("Hello, world")


def app_on(url: str) -> StepperCelery:
    return create_app(load_config({"STEPPER_REDIS_URL": url, "CELERY_CONFIG_MODULE": "absent_config"}))


async def ask(checks: EndingChecks, task_ids: list[str]) -> list[list[StreamEvent]]:
    return list(await asyncio.gather(*(checks.ended(task_id) for task_id in task_ids)))


def test_questions_asked_together_are_answered_by_one_read_of_each_kind(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    app = app_on(redis_server.url)
    app.backend.store_result("answered", ANSWER, states.SUCCESS)
    app.backend.store_result("failed", ChainExhausted("every provider failed"), states.FAILURE)
    revokes.record(redis_client, ["revoked-while-queued"], keep_s=60)
    running = [f"running-{index}" for index in range(40)]
    checks = EndingChecks(app)

    with monitored(redis_client) as seen:
        got = asyncio.run(ask(checks, ["answered", "failed", "revoked-while-queued", *running, "answered"]))

    assert got[0] == [StreamEvent("delta", "Hello, world"), done_event(ANSWER)]
    assert got[1] == [StreamEvent("error", "ChainExhausted: every provider failed")]
    assert got[2] == [StreamEvent("cancelled", "revoked")]
    assert got[3:-1] == [[] for _ in running]
    assert got[-1] == got[0]  # the same task asked twice: one answer for both
    commands = [entry["command"].split()[0] for entry in seen if entry.get("client_type") != "lua"]
    assert commands.count("MGET") == 1
    assert commands.count("ZMSCORE") == 1
    assert "GET" not in commands


def test_questions_that_come_later_are_answered_too(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    app = app_on(redis_server.url)
    checks = EndingChecks(app, window_s=0.01)

    async def scenario() -> tuple[list[StreamEvent], list[StreamEvent]]:
        before = await checks.ended("late")
        app.backend.store_result("late", ANSWER, states.SUCCESS)
        return before, await checks.ended("late")

    assert asyncio.run(scenario()) == ([], [StreamEvent("delta", "Hello, world"), done_event(ANSWER)])


def test_a_redis_that_cannot_be_read_fails_every_question() -> None:
    checks = EndingChecks(app_on("redis://127.0.0.1:1/0"))

    async def scenario() -> list[Any]:
        return list(await asyncio.gather(*(checks.ended(f"t-{index}") for index in range(3)), return_exceptions=True))

    got = asyncio.run(scenario())
    assert len(got) == 3
    assert all(isinstance(error, RedisConnectionError) for error in got)


def test_a_question_given_up_does_not_stop_the_others(redis_server: RedisServer) -> None:
    app = app_on(redis_server.url)
    app.backend.store_result("answered", ANSWER, states.SUCCESS)
    checks = EndingChecks(app)

    async def scenario() -> list[StreamEvent]:
        gone = asyncio.create_task(checks.ended("gone"))
        waiting = asyncio.create_task(checks.ended("answered"))
        await asyncio.sleep(0)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await waiting

    assert asyncio.run(scenario()) == [StreamEvent("delta", "Hello, world"), done_event(ANSWER)]
