"""A worker's housekeeping: one thread running small periodic duties beside the consumer.

- recovery: this worker's lease on the messages it holds, and the fleet's sweep of stranded ones (Redis);
- delayed: publishing the delayed messages that are due (stepper.infra.delayed);
- revokes: loading revokes recorded in Redis into Celery's in-memory set (stepper.infra.revokes);
- watchdog: exiting when the worker stopped consuming while work waits (stepper.workers.watchdog);
- reconcile: publishing again the messages lost in flight (stepper.workers.reconcile; Redis);
- dead letters: RabbitMQ's, into stepper's dead-letter store (stepper.workers.rabbitmq_dead_letters);
- metrics files: folding dead pool processes' files into archives (stepper.infra.metrics_files).

A duty that fails (Redis restarting, say) is logged once per incident and tried again at its next tick; the
thread never dies. It is not stopped with the worker's other steps: during a warm shutdown the pool still
finishes its tasks, and their lease must hold until the process exits.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Protocol

from celery import bootsteps

from stepper.config import current_settings
from stepper.infra import delayed, metrics_files, revokes
from stepper.workers.rabbitmq_dead_letters import RabbitMQDeadLettersDuty
from stepper.workers.reconcile import ReconcileDuty
from stepper.workers.recovery import Recovery, RecoveryDuty
from stepper.workers.watchdog import Watchdog

logger = logging.getLogger(__name__)

#: How often due delayed messages are published and new revokes are loaded.
TICK_S = 1.0


class Duty(Protocol):
    name: str
    interval_s: float

    def tick(self) -> None:
        """One round of the duty; raise when it could not be done."""


class DelayedDuty:
    """Publish the delayed messages that are due; a revoked one is dropped and its task marked REVOKED."""

    name = "publishing delayed messages"
    interval_s = TICK_S

    def __init__(self, app: Any) -> None:
        self.app = app

    def tick(self) -> None:
        client = self.app.state_client()
        while claimed := delayed.claim_due(client):
            task_ids = [str(message.options["task_id"]) for _, message in claimed]
            revoked = revokes.revoked_among(client, task_ids)
            for (_, message), task_id in zip(claimed, task_ids, strict=True):
                if task_id in revoked:
                    self.app.backend.mark_as_revoked(task_id, reason="revoked while it waited to be due")
                else:
                    self.app.send_task(message.name, message.args, message.kwargs, **message.options)
            delayed.done(client, [entry for entry, _ in claimed])
            if len(claimed) < delayed.CLAIM_BATCH:
                return


class RevokesDuty:
    """Keep Celery's in-memory revoked set up to date with the revokes recorded in Redis."""

    name = "loading revokes"
    interval_s = TICK_S

    def __init__(self, app: Any) -> None:
        self.app = app
        self.since_ms = 0

    def tick(self) -> None:
        load_revokes(self.app, self)


def load_revokes(app: Any, duty: RevokesDuty | None = None) -> int:
    """Add the revokes recorded since the duty's last look (all of them without one) to Celery's revoked set,
    which the worker checks before it runs any task; returns how many were read."""
    from celery.worker import state

    ids, newest = revokes.revoked_since(app.state_client(), duty.since_ms if duty else 0)
    for task_id in ids:
        state.revoked.add(task_id)
    if duty is not None:
        duty.since_ms = newest
    return len(ids)


class MetricsFilesDuty:
    """Fold the metrics files of dead processes (recycled pool children) into one archive per type."""

    name = "merging dead processes' metrics files"

    def __init__(self, directory: str, interval_s: float) -> None:
        self.directory = directory
        self.interval_s = interval_s

    def tick(self) -> None:
        metrics_files.merge_dead_processes(self.directory)


class Housekeeper(threading.Thread):
    def __init__(self, duties: list[Duty]) -> None:
        super().__init__(name="stepper-housekeeping", daemon=True)
        self.duties = duties
        self._due = dict.fromkeys(range(len(duties)), 0.0)
        self._failing: set[int] = set()

    def run(self) -> None:
        while True:
            self.run_due(time.monotonic())
            time.sleep(max(0.05, min(self._due.values()) - time.monotonic()))

    def run_due(self, now: float) -> None:
        for index, duty in enumerate(self.duties):
            if now < self._due[index]:
                continue
            self._due[index] = now + duty.interval_s
            try:
                duty.tick()
            except Exception as exc:  # noqa: BLE001 - Redis down or restarting: keep trying; the thread must not die
                if index not in self._failing:
                    logger.warning("%s failed (%s: %s); retrying", duty.name, type(exc).__name__, exc)
                self._failing.add(index)
            else:
                if index in self._failing:
                    logger.info("%s works again", duty.name)
                self._failing.discard(index)


class HousekeepingStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Loads the recorded revokes before the worker consumes, then starts the housekeeping thread."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.thread: Housekeeper | None = None

    def start(self, worker: Any) -> None:
        revokes_duty = RevokesDuty(worker.app)
        try:
            load_revokes(worker.app, revokes_duty)
        except Exception as exc:  # noqa: BLE001 - Redis not up yet: the duty loads them once it answers
            logger.warning("could not load the recorded revokes yet (%s); the housekeeping retries", exc)
        settings = current_settings().recovery
        duties: list[Duty] = [DelayedDuty(worker.app), revokes_duty]
        if worker.app.broker_kind == "redis":
            # RabbitMQ already does these: it returns a dead worker's unacknowledged messages at once, and
            # confirms every publish (nothing is lost in flight). What it dead-letters is recorded instead.
            duties.append(RecoveryDuty(worker.app, Recovery(worker.hostname, settings.lease_s)))
            if settings.inflight_grace_s:
                duties.append(ReconcileDuty(worker.app, worker.hostname, settings.lease_s, settings.inflight_grace_s))
        else:
            duties.append(RabbitMQDeadLettersDuty(worker.app))
        if settings.stall_s:
            duties.append(Watchdog(worker, settings.stall_s))
        if directory := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            duties.append(MetricsFilesDuty(directory, settings.lease_s))
        self.thread = Housekeeper(duties)
        self.thread.start()

    def stop(self, worker: Any) -> None:
        del worker  # the daemon thread ends with the process, after the pool has finished
