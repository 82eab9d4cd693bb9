"""Housekeeping duty on RabbitMQ: RabbitMQ's dead letters go to stepper's dead-letter store, with the reason.

Every stepper queue on RabbitMQ names :data:`stepper.brokers.DEAD_LETTER_EXCHANGE` as its dead-letter exchange.
RabbitMQ routes a message there, through the durable queue :data:`stepper.brokers.DEAD_LETTER_QUEUE`, when a
worker rejected it without requeueing (Celery does so with a malformed message) or when it was delivered more
than ``stepper_rabbitmq["delivery_limit"]`` times on a quorum queue (its workers kept dying). Each worker drains
that queue once a second (``basic.get``: a message goes to one worker), adds each message to the dead-letter
store (its task id, kind, request, and RabbitMQ's reason from the ``x-death`` header) and only then
acknowledges it, so a worker dying in between leaves the message for another. ``stepper dlq`` lists and
replays these entries like any other.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from stepper.brokers import dead_letter_queue
from stepper.ops.deadletters import DeadLetters, open_store
from stepper.workers.broker_connection import HeldConnection

logger = logging.getLogger(__name__)

#: Messages recorded per tick at most, so that a flood does not hold the housekeeping thread.
BATCH = 500
#: The error type of these entries (the reason is in the message).
ERROR_TYPE = "DeadLettered"


class RabbitMQDeadLettersDuty:
    name = "recording RabbitMQ's dead letters"
    interval_s = 1.0

    def __init__(self, app: Any, store: Callable[[], DeadLetters] = open_store) -> None:
        self.connection = HeldConnection(app)
        self.store = store
        self._declared = False

    def tick(self) -> None:
        try:
            queue = dead_letter_queue()(self.connection.channel())
            if not self._declared:
                queue.declare()
                self._declared = True
            for _ in range(BATCH):
                message = queue.get(no_ack=False, accept=["json"])
                if message is None:
                    return
                record(self.store(), message.headers or {}, message.body)
                message.ack()
        except Exception:
            self.connection.reset()
            self._declared = False
            raise


def record(store: DeadLetters, headers: dict[str, Any], body: bytes | str) -> str:
    """Add one dead-lettered Celery message (task protocol 2: ``task`` and ``id`` headers, a JSON body
    ``[args, kwargs, embed]``) to ``store``; returns the entry id."""
    task = str(headers.get("task") or "unknown")
    task_id = str(headers.get("id") or "unknown")
    reason, queue, count = death_of(headers)
    request: dict[str, Any]
    try:
        _args, kwargs, _embed = json.loads(body)
        request = dict(kwargs)
    except (ValueError, TypeError):
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        request = {"unreadable_body": text[:2000]}
    message = f"RabbitMQ dead-lettered {task} {task_id} from queue {queue!r}: {reason}"
    if reason == "delivery_limit":
        message += f" (delivered {count} times without an acknowledgement: its workers kept dying)"
    elif reason == "rejected":
        message += " (a worker refused it: see the worker's log for why, a malformed message usually)"
    retries = int(headers.get("retries") or 0)
    entry = store.add(task_id, task.removeprefix("stepper."), request, ERROR_TYPE, message, [], retries)
    logger.warning("%s; recorded as dead letter %s", message, entry)
    return entry


def death_of(headers: dict[str, Any]) -> tuple[str, str, int]:
    """RabbitMQ's reason, source queue and count from a dead letter's headers (``x-death``, newest first)."""
    deaths = headers.get("x-death") or [{}]
    latest = deaths[0] if isinstance(deaths, list) and deaths else {}
    reason = str(headers.get("x-first-death-reason") or latest.get("reason") or "unknown")
    queue = str(latest.get("queue") or headers.get("x-first-death-queue") or "?")
    count = int(latest.get("count") or headers.get("x-delivery-count") or 0)
    return reason, queue, count
