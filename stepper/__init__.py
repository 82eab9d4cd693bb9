"""stepper: a Celery worker fleet for AI inference.

The public surface is what ``__all__`` lists, and nothing else is promised. ``import stepper`` is cheap: Celery
and the app load on first use (``stepper.app``, ``stepper.submit``), which is also how ``celery -A stepper``
finds the app. Outcome hooks (``on_success``, ``on_failure``), ``verify_webhook`` and the workflows (``workflow``,
``resume_workflow``, ``cancel_workflow``) load on first use too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stepper.errors import (
    AuthError,
    BrokerUnavailable,
    BudgetExhausted,
    Cancelled,
    ChainExhausted,
    CircuitOpen,
    ConfigError,
    ContentRejected,
    ContextOverflow,
    DeadlineExceeded,
    DeliveryFailed,
    FirstTokenTimeout,
    InvalidRequest,
    PermanentError,
    PoisonMessage,
    ProviderError,
    RateLimited,
    RetryableError,
    StepperError,
    Timeout,
    TruncatedOutput,
    Unavailable,
    UnprocessableInput,
    UnsupportedInput,
    UnsupportedParameter,
    WorkflowFailed,
)
from stepper.priorities import PRIORITIES, PriorityName
from stepper.schemas import KINDS, Kind

if TYPE_CHECKING:
    from celery import Celery

    from stepper.batch import load_jobs, submit_many
    from stepper.outcomes.hooks import on_failure, on_success
    from stepper.outcomes.webhooks import verify as verify_webhook
    from stepper.producer import cancel, stream, submit
    from stepper.workflows.api import cancel_workflow, resume_workflow, workflow

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "PRIORITIES",
    "AuthError",
    "BrokerUnavailable",
    "BudgetExhausted",
    "Cancelled",
    "ChainExhausted",
    "CircuitOpen",
    "ConfigError",
    "ContentRejected",
    "ContextOverflow",
    "DeadlineExceeded",
    "DeliveryFailed",
    "FirstTokenTimeout",
    "InvalidRequest",
    "Kind",
    "PermanentError",
    "PoisonMessage",
    "PriorityName",
    "ProviderError",
    "RateLimited",
    "RetryableError",
    "StepperError",
    "Timeout",
    "TruncatedOutput",
    "Unavailable",
    "UnprocessableInput",
    "UnsupportedInput",
    "UnsupportedParameter",
    "WorkflowFailed",
    "__version__",
    "app",
    "cancel",
    "cancel_workflow",
    "load_jobs",
    "on_failure",
    "on_success",
    "resume_workflow",
    "stream",
    "submit",
    "submit_many",
    "verify_webhook",
    "workflow",
]


def __getattr__(name: str) -> Any:
    if name == "app":
        from stepper.celery import app

        return app
    if name in {"submit", "stream", "cancel"}:
        from stepper import producer

        return getattr(producer, name)
    if name in {"load_jobs", "submit_many"}:
        from stepper import batch

        return getattr(batch, name)
    if name in {"on_success", "on_failure"}:
        from stepper.outcomes import hooks

        return getattr(hooks, name)
    if name in {"workflow", "resume_workflow", "cancel_workflow"}:
        from stepper.workflows import api

        return getattr(api, name)
    if name == "verify_webhook":
        from stepper.outcomes.webhooks import verify

        return verify
    raise AttributeError(f"module 'stepper' has no attribute {name!r}")


if TYPE_CHECKING:
    app: Celery
