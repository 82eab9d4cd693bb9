"""stepper: a Celery worker fleet for AI inference.

The public surface is what ``__all__`` lists. ``import stepper`` is cheap: Celery and the app load on first
use (``stepper.app``, ``stepper.submit``), which is also how ``celery -A stepper`` finds the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stepper.errors import (
    AuthError,
    BrokerUnavailable,
    ChainExhausted,
    CircuitOpen,
    ConfigError,
    ContentRejected,
    DeliveryFailed,
    InvalidRequest,
    PermanentError,
    ProviderError,
    RateLimited,
    RetryableError,
    StepperError,
    Timeout,
    TruncatedOutput,
    Unavailable,
    UnsupportedInput,
)
from stepper.priorities import PRIORITIES, PriorityName
from stepper.schemas import KINDS, Kind

if TYPE_CHECKING:
    from celery import Celery

    from stepper.producer import stream, submit

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "PRIORITIES",
    "AuthError",
    "BrokerUnavailable",
    "ChainExhausted",
    "CircuitOpen",
    "ConfigError",
    "ContentRejected",
    "DeliveryFailed",
    "InvalidRequest",
    "Kind",
    "PermanentError",
    "PriorityName",
    "ProviderError",
    "RateLimited",
    "RetryableError",
    "StepperError",
    "Timeout",
    "TruncatedOutput",
    "Unavailable",
    "UnsupportedInput",
    "__version__",
    "app",
    "stream",
    "submit",
]


def __getattr__(name: str) -> Any:
    if name == "app":
        from stepper.celery import app

        return app
    if name in {"submit", "stream"}:
        from stepper import producer

        return getattr(producer, name)
    raise AttributeError(f"module 'stepper' has no attribute {name!r}")


if TYPE_CHECKING:
    app: Celery
