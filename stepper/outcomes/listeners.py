"""The listeners every worker runs once a task's outcome is final, registered here, in order.

:func:`succeeded` and :func:`failed` call each registered listener in turn; a listener that raises is logged
and skipped, so none can change a task's outcome or stop the listeners after it.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from pydantic import BaseModel

from stepper.outcomes.alerting import ExhaustedCounter
from stepper.outcomes.base import OutcomeListener, RequestLike
from stepper.outcomes.deadletter import DeadLetterListener
from stepper.outcomes.hooks import HookListener
from stepper.outcomes.webhooks import WebhookListener

log = logging.getLogger(__name__)


@cache
def registered() -> tuple[OutcomeListener, ...]:
    """The listeners of this process, in the order they run: in-process hooks first (the deployment's own
    code sees the outcome before anything leaves the process), then the alert counter, the dead-letter store,
    and the webhook last (it only enqueues a delivery)."""
    return HookListener(), ExhaustedCounter(), DeadLetterListener(), WebhookListener()


def succeeded(task_id: str, kind: str, request: BaseModel, result: dict[str, Any]) -> None:
    for listener in registered():
        try:
            listener.succeeded(task_id, kind, request, result)
        except Exception:
            log.exception("outcome listener %s failed on a success", type(listener).__name__)


def failed(task_id: str, kind: str, request: RequestLike, error: BaseException, retries: int) -> None:
    for listener in registered():
        try:
            listener.failed(task_id, kind, request, error, retries)
        except Exception:
            log.exception("outcome listener %s failed on a failure", type(listener).__name__)
