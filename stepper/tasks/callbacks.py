"""``stepper.deliver_webhook``: one signed outcome webhook, retried through the broker (see stepper.outcomes.webhooks).

The kwargs (``url, event, payload, delivery_id, first_attempt_at``) are the same on every retry, so the
receiver sees one ``Stepper-Delivery`` id however many attempts it takes. No retry waits inside the task:
a failed attempt goes back to the broker with a countdown, and the worker serves other deliveries meanwhile.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from stepper.celery import app
from stepper.config import current_settings
from stepper.errors import ConfigError, DeliveryFailed, InvalidRequest
from stepper.outcomes.webhooks import TASK_NAME, Delivery, RetryLater, deliver


@app.task(
    name=TASK_NAME,
    bind=True,
    # Bounded by time (stepper_webhooks['retry_for_s']), not by a count.
    max_retries=None,
    # Expected failures, each already logged with what to do: one line, no traceback.
    throws=(ConfigError, InvalidRequest, DeliveryFailed),
)
def deliver_webhook(
    self: Task, *, url: str, event: str, payload: dict[str, Any], delivery_id: str, first_attempt_at: float
) -> dict[str, Any]:
    """One attempt; a transient failure retries through the broker until the retry window is over."""
    settings = current_settings()
    delivery = Delivery(url, event, payload, delivery_id, first_attempt_at)
    outcome = deliver(delivery, self.request.retries + 1, settings.webhooks, settings.retry.task_countdown_cap_s)
    if isinstance(outcome, RetryLater):
        raise self.retry(countdown=outcome.countdown_s, exc=DeliveryFailed(f"webhook {delivery_id}: {outcome.reason}"))
    return outcome.as_result()
