"""The producer API: submit work by kind, from any Python process that can reach the broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import urlsplit

from celery.result import AsyncResult, EagerResult
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from stepper.config import current_settings
from stepper.errors import BrokerUnavailable, InvalidRequest
from stepper.families import FAMILIES
from stepper.infra import tracing
from stepper.infra.connections import state_redis
from stepper.infra.logs import CORRELATION_HEADER
from stepper.infra.streams import StreamEvent, read_stream
from stepper.outcomes.webhooks import check_callback_url
from stepper.priorities import PriorityName
from stepper.reuse.submitting import cached_result, claim_idempotency_key
from stepper.schemas import KINDS, Kind
from stepper.schemas.common import TaskRequest


def submit(
    kind: Kind,
    request: dict[str, Any],
    *,
    priority: PriorityName | int = "normal",
    correlation_id: str | None = None,
    **options: Any,
) -> AsyncResult | EagerResult:
    """Validate ``request`` here, then return a fresh cached result at once or enqueue it on the kind's queue.

    A cached answer comes back as an ``EagerResult`` (``.get()`` at once, ``cached: true`` in the result) and
    nothing is enqueued; a stale one also comes back at once while one refresh is enqueued for the fleet. A
    request with an ``idempotency_key`` seen within the window returns the first submission's task. Bad
    requests fail here, with the field named, without a round trip. ``options`` go to Celery's
    ``apply_async`` (``countdown``, ``link``, ``task_id``...). ``correlation_id`` follows the request into
    the workers' log lines.
    """
    if kind not in FAMILIES:
        raise InvalidRequest(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
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
    where = urlsplit(str(app.conf.broker_url))
    return (
        f"Redis at {where.hostname}:{where.port or 6379} is unreachable ({exc}); nothing was submitted. "
        "Is it running, and does STEPPER_REDIS_URL point at it?"
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
        return EagerResult(str(uuid.uuid4()), cached, "SUCCESS")
    return app.send_task(name, kwargs=request, priority=priority, **options)


def stream(task_id: str, timeout_s: float = 300.0) -> Iterator[StreamEvent]:
    """Yield the events of a chat task submitted with ``stream=True``: ``delta`` (text to append), ``reset``
    (discard the text so far: the answer restarts on another provider), then ``done`` or ``error``."""
    return read_stream(state_redis(), task_id, timeout_s)
