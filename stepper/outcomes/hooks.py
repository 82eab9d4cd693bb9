"""In-process hooks: worker code can react to every task's outcome (audit, billing, notifications).

Register in a module the worker imports (its config module, say)::

    from stepper.outcomes import hooks

    @hooks.on_success
    def bill(kind, request, result): ...

    @stepper.on_failure
    def page(kind, request, error): ...

A hook that raises is logged and skipped: it never changes the task's outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from stepper.outcomes.base import OutcomeListener, RequestLike

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


class HookListener(OutcomeListener):
    """Calls the registered hooks in registration order; a hook that raises is logged and the next one runs."""

    def succeeded(self, task_id: str, kind: str, request: BaseModel, result: dict[str, Any]) -> None:
        for hook in list(_success):
            try:
                hook(kind, request, result)
            except Exception:
                log.exception("on_success hook %s failed", getattr(hook, "__qualname__", hook))

    def failed(self, task_id: str, kind: str, request: RequestLike, error: BaseException, retries: int) -> None:
        for hook in list(_failure):
            try:
                hook(kind, request, error)
            except Exception:
                log.exception("on_failure hook %s failed", getattr(hook, "__qualname__", hook))
