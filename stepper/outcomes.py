"""What happens once a task's outcome is final: the in-process hooks, the alert counters.

None of it may change the outcome: each reporter logs its own failures and carries on.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from stepper import alerts, hooks
from stepper.errors import ChainExhausted
from stepper.runtime import state_redis


def succeeded(task_id: str, kind: str, request: BaseModel, result: dict[str, Any]) -> None:
    del task_id
    hooks.succeeded(kind, request, result)


def failed(task_id: str, kind: str, request: BaseModel | dict[str, Any], error: BaseException, retries: int) -> None:
    del task_id, retries
    hooks.failed(kind, request, error)
    if isinstance(error, ChainExhausted):
        alerts.count_exhausted(state_redis())  # feeds the chain-exhausted-rate alert
