"""What happens once a task's outcome is final: hooks, alert counters, the dead-letter store, the webhook.

None of it may change the outcome: each reporter logs its own failures and carries on.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel

from stepper import alerts, hooks
from stepper.config import current_settings
from stepper.dlq import dead_letter
from stepper.errors import ChainExhausted, InvalidRequest
from stepper.runtime import state_redis
from stepper.webhooks import check_callback_url, outcome_payload, schedule_webhook

log = logging.getLogger(__name__)


def succeeded(task_id: str, kind: str, request: BaseModel, result: dict[str, Any]) -> None:
    hooks.succeeded(kind, request, result)
    _notify(getattr(request, "callback_url", None), "task.succeeded", lambda: outcome_payload(task_id, kind, result))


def failed(task_id: str, kind: str, request: BaseModel | dict[str, Any], error: BaseException, retries: int) -> None:
    hooks.failed(kind, request, error)
    attempts = error.attempts if isinstance(error, ChainExhausted) else []
    if isinstance(error, ChainExhausted):
        alerts.count_exhausted(state_redis())  # feeds the chain-exhausted-rate alert
    dead_letter(task_id, kind, request, error, attempts, retries)
    raw = request.model_dump(mode="json") if isinstance(request, BaseModel) else request
    callback_url = raw.get("callback_url")
    _notify(
        callback_url if isinstance(callback_url, str) else None,
        "task.failed",
        lambda: outcome_payload(task_id, kind, error=error),
    )


def _notify(callback_url: str | None, event: str, payload: Any) -> None:
    """Enqueue the outcome's webhook, if the request asked for one and its URL is allowed here."""
    if callback_url is None:
        return
    try:
        check_callback_url(callback_url, current_settings().webhooks)
        schedule_webhook(callback_url, event, payload())
    except InvalidRequest as exc:
        log.warning("not calling back (%s): %s", event, exc)
    except Exception:
        log.exception("could not enqueue the %s webhook", event)
