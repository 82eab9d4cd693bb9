"""A worker that stops consuming ends, so that its supervisor starts a fresh one.

Celery and kombu have had releases (5.7.0 among them) where, after a broker restart, the worker process lives
on while its consumer is gone: it answers nothing and runs nothing, and ``inspect ping`` cannot tell, since
the remote control goes down with the consumer. The watchdog judges by what matters: while the broker answers,
this worker's queues hold work and it has a free slot, it must be receiving messages. If it received none for
``stepper_recovery["stall_s"]`` and messages waited through two checks (``stall_s / 4`` apart) without one
being taken, or Celery's consumer is not running for ``stall_s``, it logs why and exits with status 70
(EX_SOFTWARE): ``stepper fleet up``, compose's restart policy and Kubernetes restart it, and the recovery sweep
puts back whatever it held. Messages seen waiting once are not enough: a worker idle for longer than ``stall_s``
is now and then checked in the milliseconds between a publish and its delivery, and a message that is not a task
(malformed, unregistered) is taken without Celery's ``task_received``. While healthy it touches
``STEPPER_LIVENESS_FILE`` (when set) at every check: a liveness probe checks that file's age, not ``inspect ping``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from celery.signals import task_received

from stepper.ops.fleet import ping_broker, queue_depths
from stepper.workers.profiles import consumed_queues

logger = logging.getLogger(__name__)

#: The exit status of a worker that stopped consuming (sysexits' EX_SOFTWARE).
EXIT_STALLED = 70
#: The environment variable naming the file touched while the worker consumes (for liveness probes).
LIVENESS_FILE_ENV = "STEPPER_LIVENESS_FILE"

_last_received = [time.monotonic()]


@task_received.connect
def _received(**_: Any) -> None:
    """Celery's consumer, in the worker's main process, took a message off a queue."""
    _last_received[0] = time.monotonic()


class Watchdog:
    """Housekeeping duty: exit when this worker stopped consuming while work waits for it."""

    name = "watching this worker's consumption"

    def __init__(self, worker: Any, stall_s: float) -> None:
        self.worker = worker
        self.stall_s = stall_s
        self.interval_s = max(1.0, stall_s / 4)
        # The queues the worker was started for: a consumer that lost one has stalled on it.
        self.queues = consumed_queues(worker.app)
        self.liveness_file = os.environ.get(LIVENESS_FILE_ENV)
        self._not_running_since: float | None = None
        #: How many messages waited at the last check that found some while this worker was idle, with a free slot.
        self._waiting: int | None = None
        _last_received[0] = time.monotonic()  # the worker gets a whole stall_s to start consuming

    def tick(self) -> None:
        now = time.monotonic()
        reason = self.stall_reason(now)
        if reason is None:
            if self.liveness_file:
                Path(self.liveness_file).touch()
            return
        logger.critical("this worker stopped consuming: %s; exiting (status %d) to be restarted", reason, EXIT_STALLED)
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        os._exit(EXIT_STALLED)

    def stall_reason(self, now: float) -> str | None:
        """Why this worker counts as stalled now, or None. Raises when the broker cannot be asked (not a stall)."""
        if _shutting_down():  # a warm shutdown stops the consumer on purpose while tasks in flight finish
            return None
        ping_broker(self.worker.app)  # the broker down is an outage, not a stall: the consumer reconnects later
        if not self._consumer_running():
            self._waiting = None
            self._not_running_since = self._not_running_since or now
            if now - self._not_running_since >= self.stall_s:
                return f"Celery's consumer has not been running for {now - self._not_running_since:.0f}s"
            return None
        self._not_running_since = None
        idle_s = now - _last_received[0]
        if idle_s < self.stall_s or not self._has_free_slot():
            self._waiting = None
            return None
        waiting = {queue: sum(levels.values()) for queue, levels in queue_depths(self.worker.app, self.queues).items()}
        previous, self._waiting = self._waiting, sum(waiting.values()) or None
        if self._waiting is None or previous is None or self._waiting < previous:
            return None  # nothing waits, it only just came, or the consumer took some since the last check
        held = ", ".join(f"{queue} {count}" for queue, count in waiting.items() if count)
        return f"messages wait ({held}) and it has free slots, yet it received none for {idle_s:.0f}s"

    def _consumer_running(self) -> bool:
        from celery import bootsteps

        consumer = getattr(self.worker, "consumer", None)
        blueprint = getattr(consumer, "blueprint", None)
        return blueprint is not None and blueprint.state == bootsteps.RUN

    def _has_free_slot(self) -> bool:
        from celery.worker import state

        return len(state.active_requests) < max(1, int(getattr(self.worker, "concurrency", 1) or 1))


def _shutting_down() -> bool:
    from celery.worker import state

    return state.should_stop is not None or state.should_terminate is not None
