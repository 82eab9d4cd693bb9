"""A worker-side guard: a malformed message for a stepper task is rejected, not a consumer crash.

Celery's default strategy unpacks the body before anything can refuse it; a JSON body that is not
``[args, kwargs, embed]`` raises ``ValueError`` inside the consumer, which restarts, restores the message and
meets it again. Raised as ``InvalidTaskError`` instead, Celery logs the message and rejects it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.exceptions import InvalidTaskError
from celery.worker.strategy import default


def guarded(task: Any, app: Any, consumer: Any, **options: Any) -> Callable[..., Any]:
    handle = default(task, app, consumer, **options)

    def handle_or_refuse(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **more: Any) -> Any:
        try:
            return handle(message, body, ack, reject, callbacks, **more)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InvalidTaskError(f"malformed {task.name} message ({type(exc).__name__}: {exc})") from exc

    return handle_or_refuse
