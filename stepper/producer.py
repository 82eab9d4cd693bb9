"""The producer API: submit work by kind, from any Python process that can reach the broker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from celery.result import AsyncResult

from stepper.errors import InvalidRequest
from stepper.families import FAMILIES
from stepper.llm.streaming import StreamEvent, read_stream
from stepper.priorities import PriorityName
from stepper.runtime import state_redis
from stepper.schemas import KINDS, Kind


def submit(
    kind: Kind, request: dict[str, Any], *, priority: PriorityName | int = "normal", **options: Any
) -> AsyncResult:
    """Validate ``request`` here, then enqueue it on the ``kind`` queue; returns the task's AsyncResult.

    Validation before sending means a bad request fails in the producer, with the field named, without a
    round trip. ``options`` go to Celery's ``apply_async`` (``countdown``, ``link``, ``task_id``...).
    """
    if kind not in FAMILIES:
        raise InvalidRequest(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    FAMILIES[kind].parse(request)
    from stepper import tasks  # loads Celery only when a producer first submits

    task = getattr(tasks, kind)
    return task.apply_async(kwargs=request, priority=priority, **options)


def stream(task_id: str, timeout_s: float = 300.0) -> Iterator[StreamEvent]:
    """Yield the events of a chat task submitted with ``stream=True``: ``delta`` (text to append), ``reset``
    (discard the text so far: the answer restarts on another provider), then ``done`` or ``error``."""
    return read_stream(state_redis(), task_id, timeout_s)
