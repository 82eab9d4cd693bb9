"""Poison messages end: a task whose run kills its worker is not redelivered forever.

``task_acks_late`` with ``task_reject_on_worker_lost`` puts back the message of a run whose pool process died
(an engine segfault, the OOM killer), and stepper's recovery sweep puts back those of a whole worker that
died. Each such message comes back marked redelivered. Every redelivered run is counted in Redis, and the
count is forgotten as soon as a run ends in any way a worker survives (success, failure, retry, requeue):
what is left counts the runs that killed their worker. Once that reaches ``stepper_recovery["max_deliveries"]``,
the task fails with :class:`~stepper.errors.PoisonMessage` (and goes to the dead-letter store) instead of
running again. First deliveries cost nothing: only redeliveries are counted.
"""

from __future__ import annotations

from typing import Any

from stepper.config import current_config, current_settings
from stepper.errors import PoisonMessage
from stepper.infra import keys
from stepper.infra.connections import state_redis


def is_redelivery(request: Any) -> bool:
    """Whether Celery's task ``request`` came from a message put back on its queue (kombu marks it so)."""
    return bool((request.delivery_info or {}).get("redelivered"))


def count_redelivery(task_id: str, kind: str) -> None:
    """Count this redelivered run; raise PoisonMessage when the runs before it killed their worker too often."""
    limit = current_settings().recovery.max_deliveries
    ttl_ms = int(float(current_config().get("result_expires") or 86400) * 1000)
    pipe = state_redis().pipeline(transaction=True)
    pipe.incr(keys.deliveries(task_id))
    pipe.pexpire(keys.deliveries(task_id), ttl_ms)
    crashed_runs = int(pipe.execute()[0])  # the first delivery is not counted, so this is the runs lost
    if crashed_runs >= limit:
        raise PoisonMessage(
            f"stepper.{kind} {task_id} was not run again: its last {crashed_runs} runs killed their worker process "
            "(an engine crash on this input, or the OOM killer); see `stepper dlq show` for the request, and "
            "raise stepper_recovery['max_deliveries'] only if the worker died for another reason"
        )


def forget_redeliveries(task_id: str) -> None:
    """The run ended with its worker alive: whatever happens next is not a poison message's doing."""
    state_redis().delete(keys.deliveries(task_id))
