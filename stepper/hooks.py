"""In-process hooks: worker code can react to every task's outcome (audit, billing, notifications).

Register in a module the worker imports (its config module, say)::

    from stepper import hooks

    @hooks.on_success
    def bill(kind, request, result): ...

    @hooks.on_failure
    def page(kind, request, error): ...

A hook that raises is logged and skipped: it never changes the task's outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

log = logging.getLogger(__name__)

SuccessHook = Callable[[str, BaseModel, dict[str, Any]], None]
FailureHook = Callable[[str, BaseModel | dict[str, Any], BaseException], None]

_success: list[SuccessHook] = []
_failure: list[FailureHook] = []


def on_success(hook: SuccessHook) -> SuccessHook:
    """Call ``hook(kind, request, result)`` after every successful task."""
    _success.append(hook)
    return hook


def on_failure(hook: FailureHook) -> FailureHook:
    """Call ``hook(kind, request, error)`` after every task that failed for good (not one going to retry).
    ``request`` is the raw keyword arguments when they did not validate."""
    _failure.append(hook)
    return hook


def clear() -> None:
    """Forget every hook (for tests and reloads)."""
    _success.clear()
    _failure.clear()


def succeeded(kind: str, request: BaseModel, result: dict[str, Any]) -> None:
    for hook in list(_success):
        try:
            hook(kind, request, result)
        except Exception:
            log.exception("on_success hook %s failed", getattr(hook, "__qualname__", hook))


def failed(kind: str, request: BaseModel | dict[str, Any], error: BaseException) -> None:
    for hook in list(_failure):
        try:
            hook(kind, request, error)
        except Exception:
            log.exception("on_failure hook %s failed", getattr(hook, "__qualname__", hook))
