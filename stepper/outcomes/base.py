"""The outcome listener: a base class whose hooks do nothing, so a listener overrides only what it needs
(dramatiq's middleware pattern). :mod:`stepper.outcomes.listeners` registers and calls them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

#: The validated request, or its raw keyword arguments when they did not validate.
RequestLike = BaseModel | dict[str, Any]


class OutcomeListener:
    """Called once per task whose outcome is final (a task going back to the broker for a retry is not)."""

    def succeeded(self, task_id: str, kind: str, request: BaseModel, result: dict[str, Any]) -> None:
        """``result``: the task's JSON result envelope, as its caller receives it."""

    def failed(self, task_id: str, kind: str, request: RequestLike, error: BaseException, retries: int) -> None:
        """``retries``: how many times the task went back to the broker before this final failure."""
