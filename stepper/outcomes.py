"""What happens once a task's outcome is final: the in-process hooks.

None of it may change the outcome: each reporter logs its own failures and carries on.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from stepper import hooks


def succeeded(task_id: str, kind: str, request: BaseModel, result: dict[str, Any]) -> None:
    del task_id
    hooks.succeeded(kind, request, result)


def failed(task_id: str, kind: str, request: BaseModel | dict[str, Any], error: BaseException, retries: int) -> None:
    del task_id, retries
    hooks.failed(kind, request, error)
