"""The producer API: submit work by kind, from any Python process that can reach the broker."""

from __future__ import annotations

from typing import Any

from celery.result import AsyncResult

from stepper.errors import InvalidRequest
from stepper.families import FAMILIES
from stepper.priorities import PriorityName
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
