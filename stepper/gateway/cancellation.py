"""Cancellation at the gateway: a cancelled task ends its client's wait.

A revoke is recorded in Redis (:mod:`stepper.infra.revokes`) before any worker acts on it, so the gateway can
tell a client its task was cancelled even when no worker has taken the task yet (queued behind busy workers,
or on a queue nobody consumes), instead of keeping it until the chat timeout.
"""

from __future__ import annotations

from stepper.gateway.state import Gateway
from stepper.infra import revokes

#: The status of an answer whose task was cancelled (nginx's "client closed request", Google's CANCELLED).
CANCELLED_STATUS = 499


def revoked(state: Gateway, task_id: str) -> bool:
    """Whether ``task_id`` was revoked: it will never answer, even if no worker has seen it yet (one Redis read)."""
    return bool(revokes.revoked_among(state.celery.state_client(), [task_id]))
