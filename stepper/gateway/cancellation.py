"""Cancellation at the gateway: a client that hangs up cancels its task, and a cancelled task ends its client's wait.

Nobody reads an answer whose client left, so the fleet should not pay for it. A streamed answer is relayed by
:class:`EventStream`: server-sent events from an async iterator (a chat's, fed by the gateway's
:class:`~stepper.infra.stream_hub.StreamHub`) or a blocking one stepped in worker threads. Starlette notices a
hang-up by listening for ``http.disconnect`` (uvicorn speaks ASGI 2.3) and cancels the relay: an async one stops
where it waits; a blocking step (a Redis read of up to a second) is abandoned rather than awaited and the
iterator stops at its next check of :meth:`Relay.check_client`. Either way the task is revoked at once. A
plain answer is waited for in a worker thread while :func:`wait_watching` asks the server every ``WATCH_S``
whether the client is still there.

A revoke goes through the app's control, which stepper records in Redis (:mod:`stepper.infra.revokes`): a task
that has not started never runs, a running one stops within about a second. A cached answer has no task: its
hang-up is only counted, in ``stepper_gateway_client_disconnects_total``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from celery.result import AsyncResult, EagerResult
from fastapi import Request
from fastapi.responses import StreamingResponse
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from stepper.gateway.errors import ApiError
from stepper.gateway.metrics import route_label
from stepper.gateway.state import Gateway
from stepper.infra import revokes

log = logging.getLogger("stepper.gateway")

#: How often a plain request's wait asks whether its client is still there (seconds).
WATCH_S = 0.25
#: The longest blocking step of that wait's worker thread (Celery waits for a result in one-second drains).
STEP_S = 1.0
#: The status of an answer whose task was cancelled (nginx's "client closed request", Google's CANCELLED).
CANCELLED_STATUS = 499

T = TypeVar("T")


class ClientGone(Exception):
    """Raised inside a relay's worker thread once its client has hung up: the relay stops there."""


@dataclass
class Relay:
    """What a streamed relay running in worker threads and the response serving it share.

    The relay sets ``over`` once its task's outcome is known (or it gave up on the task): a hang-up after that
    cancels nothing. The response sets ``gone`` when the client hung up before that.
    """

    over: bool = False
    gone: threading.Event = field(default_factory=threading.Event)

    def check_client(self) -> None:
        """Raise :class:`ClientGone` if the client hung up; a relay calls it whenever it waits (each second)."""
        if self.gone.is_set():
            raise ClientGone


class EventStream(StreamingResponse):
    """``text/event-stream`` from ``events``: an async iterator, or a blocking one whose steps run in worker
    threads. A client that hangs up before ``relay.over`` makes ``on_hang_up`` run once, right away, however the
    server tells of the hang-up."""

    def __init__(
        self,
        events: Iterator[str] | AsyncIterator[str],
        relay: Relay,
        on_hang_up: Callable[[], Awaitable[None]],
    ) -> None:
        stepped = events if isinstance(events, AsyncIterator) else _in_threads(events)
        self._relayed = _relay(stepped, relay, on_hang_up)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(self._relayed, media_type="text/event-stream", headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # A hang-up noticed at a write (ASGI 2.4 servers raise there) leaves the relay suspended: close it now.
            with anyio.CancelScope(shield=True):
                await self._relayed.aclose()


async def _relay(
    events: AsyncIterator[str], relay: Relay, on_hang_up: Callable[[], Awaitable[None]]
) -> AsyncGenerator[str, None]:
    try:
        async for event in events:
            yield event
    except (anyio.get_cancelled_exc_class(), GeneratorExit):
        if not relay.over:
            relay.gone.set()
            with anyio.CancelScope(shield=True):
                await on_hang_up()
        raise


async def _in_threads(events: Iterator[str]) -> AsyncGenerator[str, None]:
    """A blocking iterator stepped in worker threads; a step still blocked at a hang-up is abandoned."""
    while (event := await anyio.to_thread.run_sync(_next, events, abandon_on_cancel=True)) is not None:
        yield event


def _next(events: Iterator[str]) -> str | None:
    return next(events, None)


async def wait_watching(
    request: Request,
    state: Gateway,
    result: AsyncResult | EagerResult,
    step: Callable[[float], T | None],
    timeout_s: float,
) -> T | None:
    """The answer of ``step(seconds)`` (blocking: the answer, or None when it did not come within ``seconds``),
    repeated in a worker thread; None after ``timeout_s``. Meanwhile, every ``WATCH_S``, a client that hung up
    cancels ``result``'s task and the request ends with ``ApiError`` 499 ``cancelled``, which nobody receives;
    the thread stops after its current step. Errors raised by ``step`` propagate."""
    stop = threading.Event()

    def wait() -> T | None:
        deadline = time.monotonic() + timeout_s
        while not stop.is_set() and (left_s := deadline - time.monotonic()) > 0:
            if (answer := step(min(STEP_S, left_s))) is not None:
                return answer
        return None

    waiting = asyncio.ensure_future(run_in_threadpool(wait))
    waiting.add_done_callback(_settled)
    try:
        while not (await asyncio.wait({waiting}, timeout=WATCH_S))[0]:
            if await request.is_disconnected():
                await hang_up(state, request, result)
                raise ApiError(CANCELLED_STATUS, "the client closed the request; its task was cancelled", "cancelled")
        return waiting.result()
    finally:
        stop.set()


def _settled(waiting: asyncio.Future[Any]) -> None:
    """Take the outcome of a wait nobody may read any more (its client left), so asyncio does not log it."""
    if not waiting.cancelled():
        waiting.exception()


async def hang_up(state: Gateway, request: Request, result: AsyncResult | EagerResult) -> None:
    """Count a client that left before its answer ended, and revoke its task (a cached answer has none)."""
    state.metrics.client_disconnects.labels(route_label(request.scope)).inc()
    if isinstance(result, EagerResult):
        return
    try:
        await run_in_threadpool(state.celery.control.revoke, result.id)
    except (RedisError, OperationalError) as exc:  # the task runs to its end; nobody reads its answer
        log.warning("could not cancel task %s after its client hung up: %s", result.id, exc)
        return
    log.info("cancelled task %s: its client hung up", result.id)


def revoked(state: Gateway, task_id: str) -> bool:
    """Whether ``task_id`` was revoked: it will never answer, even if no worker has seen it yet (one Redis read)."""
    return bool(revokes.revoked_among(state.celery.state_client(), [task_id]))
