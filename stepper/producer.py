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

from stepper import tracing
from stepper.cache import cache_key, cacheable, idempotency_key
from stepper.config import current_settings
from stepper.errors import BrokerUnavailable, InvalidRequest
from stepper.families import FAMILIES
from stepper.llm.streaming import StreamEvent, read_stream
from stepper.logs import CORRELATION_HEADER
from stepper.priorities import PriorityName
from stepper.runtime import state_redis
from stepper.schemas import KINDS, Kind
from stepper.schemas.common import TaskRequest
from stepper.serving import as_cached, enqueue_refresh, result_cache
from stepper.webhooks import check_callback_url


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
    from stepper import tasks  # loads Celery's task registry only when a producer first submits

    task = getattr(tasks, kind)
    if correlation_id is not None:
        options["headers"] = {**options.get("headers", {}), CORRELATION_HEADER: correlation_id}
    with _broker_errors(task.app):
        if tracing.setup():
            with tracing.span("stepper.submit", {"stepper.kind": kind}):
                headers: dict[str, str] = dict(options.get("headers", {}))
                tracing.inject(headers)  # the worker's task span continues this trace
                options["headers"] = headers
                return _send(task, kind, request, parsed, priority=priority, options=options)
        return _send(task, kind, request, parsed, priority=priority, options=options)


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
    task: Any,
    kind: Kind,
    request: dict[str, Any],
    parsed: TaskRequest,
    *,
    priority: PriorityName | int,
    options: dict[str, Any],
) -> AsyncResult | EagerResult:
    """A cached result, the first task of a known idempotency key, or a new message."""
    settings = current_settings()
    family = FAMILIES[kind]
    if parsed.idempotency_key is not None:
        task_id = str(options.pop("task_id", None) or uuid.uuid4())
        claim = f"{idempotency_key(kind, parsed.idempotency_key)}:task"
        window_ms = int(settings.cache.idempotency_window_s * 1000)
        if not state_redis().set(claim, task_id.encode(), nx=True, px=window_ms):
            first = state_redis().get(claim)
            return AsyncResult(first.decode() if isinstance(first, bytes) else task_id, app=task.app)
        return task.apply_async(kwargs=request, priority=priority, task_id=task_id, **options)
    if cacheable(kind, parsed, settings.cache) and parsed.cache != "refresh":
        window = settings.cache.windows[kind]
        key = cache_key(kind, parsed, settings, family.output_model)
        results = result_cache()
        if (hit := results.get(key, window)) is not None:
            if not hit.fresh and results.claim_refresh(key, float(task.app.conf.task_time_limit or 300)):
                enqueue_refresh(family, parsed, task.app)
            return EagerResult(str(uuid.uuid4()), as_cached(hit.result), "SUCCESS")
    return task.apply_async(kwargs=request, priority=priority, **options)


def stream(task_id: str, timeout_s: float = 300.0) -> Iterator[StreamEvent]:
    """Yield the events of a chat task submitted with ``stream=True``: ``delta`` (text to append), ``reset``
    (discard the text so far: the answer restarts on another provider), then ``done`` or ``error``."""
    return read_stream(state_redis(), task_id, timeout_s)
