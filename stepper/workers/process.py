"""Per-process set-up of pool processes: heavy objects are made after the fork, not at import."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init

from stepper.runtime import current_executor


@worker_process_init.connect
def _warm_up(**_: Any) -> None:
    """Build this child's registry, guard and Redis client before its first task arrives."""
    current_executor()
