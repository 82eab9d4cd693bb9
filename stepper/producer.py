"""The producer API: submit work by kind, from any Python process that can reach the broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import urlsplit

from celery import states
from celery.result import AsyncResult, EagerResult
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from stepper.brokers import is_redis_url
from stepper.config import current_settings
from stepper.errors import BrokerUnavailable, InvalidRequest
from stepper.families import FAMILIES
from stepper.infra import tracing
from stepper.infra.connections import state_redis, state_url
from stepper.infra.logs import CORRELATION_HEADER
from stepper.infra.streams import RedisStreamSink, StreamEvent, answer_events, done_event, read_stream
from stepper.outcomes.webhooks import check_callback_url
from stepper.priorities import PriorityName
from stepper.reuse.submitting import cached_result, claim_idempotency_key
from stepper.schemas import KINDS, ChatRequest, Kind
from stepper.schemas.common import TaskRequest


def submit(
    kind: Kind,
    request: dict[str, Any],
    *,
    priority: PriorityName | int = "normal",
    correlation_id: str | None = None,
    parsed: TaskRequest | None = None,
    **options: Any,
) -> AsyncResult | EagerResult:
    """Validate ``request`` here, then return a fresh cached result at once or enqueue it on the kind's queue.

    A cached answer comes back as an ``EagerResult`` (``.get()`` at once, ``cached: true`` in the result) and
    nothing is enqueued; a stale one also comes back at once while one refresh is enqueued for the fleet. A
    request with an ``idempotency_key`` seen within the window returns the first submission's task. Bad
    requests fail here, with the field named, without a round trip. ``options`` go to Celery's
    ``apply_async`` (``countdown``, ``link``, ``task_id``...). ``correlation_id`` follows the request into
    the workers' log lines. ``parsed``: ``request`` as the caller already validated it
    (``FAMILIES[kind].parse(request)``, as the gateway and ``stepper batch`` do before admitting it), so that it
    is not validated twice; ``request`` is still what is sent.
    """
    if kind not in FAMILIES:
        raise InvalidRequest(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    if parsed is None:
        parsed = cast(TaskRequest, FAMILIES[kind].parse(request))
    if parsed.callback_url is not None:
        check_callback_url(parsed.callback_url, current_settings().webhooks)
    from stepper.celery import app  # loads Celery only when a producer first submits

    if correlation_id is not None:
        options["headers"] = {**options.get("headers", {}), CORRELATION_HEADER: correlation_id}
    with _broker_errors(app):
        if tracing.setup():
            with tracing.span("stepper.submit", {"stepper.kind": kind}):
                headers: dict[str, str] = dict(options.get("headers", {}))
                tracing.inject(headers)  # the worker's task span continues this trace
                options["headers"] = headers
                return _send(app, kind, request, parsed, priority=priority, options=options)
        return _send(app, kind, request, parsed, priority=priority, options=options)


@contextmanager
def _broker_errors(app: Any) -> Iterator[None]:
    """Redis unreachable, however the layer below says it, becomes one BrokerUnavailable naming the server."""
    try:
        yield
    except (RedisError, OperationalError) as exc:
        raise BrokerUnavailable(_unreachable(app, exc)) from exc
    except RuntimeError as exc:
        # Celery's result consumer, when Redis was never reachable: "Retry limit exceeded while trying to
        # reconnect to the Celery result store backend", raised from the connection error.
        if not isinstance(exc.__context__, RedisError):
            raise
        raise BrokerUnavailable(_unreachable(app, exc.__context__)) from exc


def _unreachable(app: Any, exc: BaseException) -> str:
    """kombu says OperationalError for the broker; redis-py's own errors come from the results or the state."""
    if isinstance(exc, OperationalError):
        url, variable = str(app.conf.broker_url).split(";", 1)[0], "STEPPER_BROKER_URL"
    else:
        url, variable = state_url(), "STEPPER_STATE_REDIS_URL"
    where = urlsplit(url)
    server = "Redis" if is_redis_url(url) else "RabbitMQ"
    port = where.port or (6379 if server == "Redis" else 5672)
    return (
        f"{server} at {where.hostname}:{port} is unreachable ({exc}); nothing was submitted. "
        f"Is it running, and does STEPPER_REDIS_URL (or {variable}) point at it?"
    )


def _send(
    app: Any,
    kind: Kind,
    request: dict[str, Any],
    parsed: TaskRequest,
    *,
    priority: PriorityName | int,
    options: dict[str, Any],
) -> AsyncResult | EagerResult:
    """A cached result, the first task of a known idempotency key, or a new message."""
    family = FAMILIES[kind]
    name = f"stepper.{kind}"
    if parsed.idempotency_key is not None:
        task_id = str(options.pop("task_id", None) or uuid.uuid4())
        first = claim_idempotency_key(family, parsed, task_id)
        if first is not None:
            return AsyncResult(first, app=app)
        return app.send_task(name, kwargs=request, priority=priority, task_id=task_id, **options)
    if (cached := cached_result(family, parsed, app)) is not None:
        eager = EagerResult(str(uuid.uuid4()), cached, "SUCCESS")
        if isinstance(parsed, ChatRequest) and parsed.stream:  # a streaming reader gets the answer at once
            RedisStreamSink(state_redis(), eager.id).done(cached)
        return eager
    return app.send_task(name, kwargs=request, priority=priority, **options)


def stream(task_id: str, timeout_s: float = 300.0) -> Iterator[StreamEvent]:
    """Yield the events of a chat task submitted with ``stream=True``: ``delta`` (text to append), ``tool_call``
    (a fragment of a tool call, JSON ``{"index", "id", "name", "arguments"}``), ``reset``
    (discard the text so far: the answer restarts on another provider), then ``done`` (its text: JSON
    ``{"finish_reason", "logprobs", "usage"}``, see ``stepper.infra.streams.answer_ending``), ``error`` or
    ``cancelled``. A task that ended without writing its stream (revoked before it ran, say) ends it too.
    Raises ``TimeoutError`` when nothing ends the stream within ``timeout_s``."""
    from stepper.celery import app

    return read_stream(state_redis(), task_id, timeout_s, ended=lambda: outcome_events(AsyncResult(task_id, app=app)))


def outcome_events(result: AsyncResult) -> list[StreamEvent]:
    """The events that end the stream of a task that has finished (``[]`` while it has not): its answer and
    ``done``, ``error``, or ``cancelled`` for a revoked task. One read of the result backend (a finished task's
    result is kept with its state)."""
    state = result.state
    return ending_events(state, result.result if state in states.READY_STATES else None)


def ending_events(state: str, value: Any) -> list[StreamEvent]:
    """:func:`outcome_events` of a task in Celery ``state`` whose stored result is ``value`` (an exception for a
    failure, as the result backend decodes it)."""
    if state == "SUCCESS":
        if not isinstance(value, dict):
            return [StreamEvent("delta", ""), StreamEvent("done", "")]
        return [*(answer_events(value["output"]["message"]) or [StreamEvent("delta", "")]), done_event(value)]
    if state == "REVOKED":
        return [StreamEvent("cancelled", str(value or "revoked"))]
    if state == "FAILURE":
        return [StreamEvent("error", f"{type(value).__name__}: {value}")]
    return []


def cancel(task_id: str) -> None:
    """Cancel a task: one that has not started never runs, and one that is running stops cooperatively within
    about a second (its vendor call is closed; it ends ``REVOKED`` and a streaming reader gets ``cancelled``).
    Celery's ``revoke``, recorded in Redis so that workers started later honour it too. Raises
    ``BrokerUnavailable`` when Redis cannot be reached."""
    from stepper.celery import app

    with _broker_errors(app):
        app.control.revoke(task_id)
