"""The gateway's hang-up handling, driven as an ASGI server would drive it: which server behaviour reaches the
relay, whether the relay's blocked thread is let go, and what a plain request's wait does when its client leaves."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from types import SimpleNamespace
from typing import Any, cast

import pytest
from celery import Celery
from celery.result import AsyncResult
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from stepper.gateway.cancellation import ClientGone, EventStream, Relay, wait_watching
from stepper.gateway.errors import ApiError
from stepper.gateway.metrics import GatewayMetrics
from stepper.gateway.state import Gateway

#: A generous bound for what should take well under a second; reaching it means the relay waited on its thread.
BOUND_S = 10.0


class Client:
    """The server's side of one HTTP exchange: what was sent, and a hang-up the test triggers."""

    def __init__(self, hang_up_after_bodies: int | None = None, *, raise_on_send: bool = False) -> None:
        self.bodies: list[bytes] = []
        self.gone = asyncio.Event()
        self._hang_up_after = hang_up_after_bodies
        self._raise_on_send = raise_on_send

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.gone.is_set() and self._raise_on_send:
            raise OSError("connection reset by peer")  # what an ASGI 2.4 server does
        if message["type"] == "http.response.body" and message.get("body"):
            self.bodies.append(message["body"])
            if len(self.bodies) == self._hang_up_after:
                self.gone.set()


def scope(spec_version: str = "2.3") -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": spec_version}, "method": "POST", "headers": []}


class HangUps:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1


def silent_after(
    relay: Relay, first: list[str], stopped: threading.Event, on_silence: Callable[[], object] = lambda: None
) -> Iterator[str]:
    """Events like a relay's: ``first``, then silence (a stream nobody writes yet), checking the client each 50 ms."""
    yield from first
    on_silence()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.05)
            relay.check_client()
        yield "data: too late\n\n"
    except ClientGone:
        stopped.set()


def serve(response: EventStream, client: Client) -> None:
    asyncio.run(asyncio.wait_for(response(scope(), client.receive, client.send), BOUND_S))


def test_a_hang_up_during_silence_cancels_at_once_and_lets_the_relay_go() -> None:
    relay, stopped, hang_ups = Relay(), threading.Event(), HangUps()
    client = Client()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        hang_up = partial(loop.call_soon_threadsafe, client.gone.set)  # once the relay's thread waits on silence
        response = EventStream(silent_after(relay, ["data: first\n\n"], stopped, hang_up), relay, hang_ups)
        await asyncio.wait_for(response(scope(), client.receive, client.send), BOUND_S)

    asyncio.run(run())
    assert client.bodies == [b"data: first\n\n"]
    assert hang_ups.count == 1 and relay.gone.is_set()
    assert stopped.wait(BOUND_S)  # the thread left blocked in the relay stops at its next check


def test_a_hang_up_seen_only_at_a_write_cancels_too() -> None:
    """ASGI 2.4 servers: Starlette does not listen for the disconnect, the next write fails instead."""
    relay, hang_ups = Relay(), HangUps()
    client = Client(hang_up_after_bodies=1, raise_on_send=True)
    response = EventStream(iter(["data: first\n\n", "data: second\n\n"]), relay, hang_ups)

    async def run() -> int:
        with pytest.raises(ClientDisconnect):
            await asyncio.wait_for(response(scope("2.4"), client.receive, client.send), BOUND_S)
        return hang_ups.count  # now, not whenever the relay would be garbage-collected

    assert asyncio.run(run()) == 1


def test_a_hang_up_after_the_outcome_is_known_cancels_nothing() -> None:
    relay, stopped, hang_ups = Relay(), threading.Event(), HangUps()

    def events() -> Iterator[str]:
        yield "data: answer\n\n"
        relay.over = True  # the task is over: what is left to send is its ending
        yield "data: [DONE]\n\n"
        yield from silent_after(relay, [], stopped)

    client = Client(hang_up_after_bodies=2)
    serve(EventStream(events(), relay, hang_ups), client)
    assert client.bodies == [b"data: answer\n\n", b"data: [DONE]\n\n"]
    assert hang_ups.count == 0


def test_a_stream_that_ends_cancels_nothing() -> None:
    relay, hang_ups = Relay(), HangUps()
    client = Client()
    serve(EventStream(iter(["data: a\n\n", "data: [DONE]\n\n"]), relay, hang_ups), client)
    assert client.bodies == [b"data: a\n\n", b"data: [DONE]\n\n"]
    assert hang_ups.count == 0


def fake_gateway(revoked: list[str]) -> Gateway:
    control = SimpleNamespace(revoke=revoked.append)
    return cast(Gateway, SimpleNamespace(metrics=GatewayMetrics(), celery=SimpleNamespace(control=control)))


def disconnects(state: Gateway) -> float | None:
    return state.metrics.registry.get_sample_value("stepper_gateway_client_disconnects_total", {"route": "unmatched"})


def test_a_plain_wait_whose_client_leaves_revokes_its_task() -> None:
    revoked: list[str] = []
    state = fake_gateway(revoked)
    result = AsyncResult("task-1", app=Celery(set_as_current=False))
    steps: list[float] = []

    async def run() -> None:
        client = Client()
        loop = asyncio.get_running_loop()

        def step(seconds: float) -> None:
            steps.append(seconds)
            if len(steps) == 2:
                loop.call_soon_threadsafe(client.gone.set)
            time.sleep(min(seconds, 0.05))

        request = Request(scope(), client.receive)
        await asyncio.wait_for(wait_watching(request, state, result, step, timeout_s=60), BOUND_S)

    with pytest.raises(ApiError) as answered:
        asyncio.run(run())
    assert answered.value.status_code == 499 and answered.value.code == "cancelled"
    assert revoked == ["task-1"]
    assert disconnects(state) == 1


def test_a_plain_wait_answers_without_revoking() -> None:
    revoked: list[str] = []
    state = fake_gateway(revoked)
    result = AsyncResult("task-2", app=Celery(set_as_current=False))
    answers = iter([None, None, {"answer": 42}])

    async def run() -> dict[str, int] | None:
        request = Request(scope(), Client().receive)
        return await wait_watching(request, state, result, lambda seconds: next(answers), timeout_s=60)

    assert asyncio.run(run()) == {"answer": 42}
    assert revoked == [] and not disconnects(state)
