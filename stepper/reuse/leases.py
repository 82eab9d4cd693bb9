"""The claims this process holds on computations in flight, kept alive for as long as it computes them.

A claim (single flight, an idempotency key) is taken for ``stepper_recovery["lease_s"]`` (20 s) and renewed
four times per lease while its computation runs, by one thread per process. Nobody takes a claim over while
it lives, not even a copy of the same task: RabbitMQ puts a running task's message back the moment its
worker's connection drops, and kombu's Redis transport when its connection is reset, so the copy can start
while the first run still calls the provider. The copy then waits for that run's result, as any identical
request does. A claim whose holder died (its worker SIGKILLed, its machine gone) is renewed no more and runs
out within one lease; a waiter then computes.

:class:`LeaseKeeper` holds the claims; :func:`run_owner` names the run that holds one. The stores renew in one
round trip per store and tick, one per claim on a Redis Cluster (:meth:`stepper.reuse.cache.ResultStore.renew`).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import RedisError

from stepper.settings import RENEWALS_PER_LEASE

logger = logging.getLogger(__name__)

#: How often an idle keeper looks again, in seconds; holding claims, it looks every quarter of the shortest lease.
IDLE_TICK_S = 1.0

#: Different in every process that imports stepper (a forked child adds its own pid in :func:`run_owner`).
_PROCESS = secrets.token_hex(4)
_runs = itertools.count(1)


def run_owner(task_id: str) -> str:
    """A name for one run of task ``task_id`` that no other run shares: a redelivered copy of the task, in this
    process or another, gets another (``<task id> <process>.<pid>.<n>``)."""
    return f"{task_id} {_PROCESS}.{os.getpid()}.{next(_runs)}"


class Renewing(Protocol):
    """A store whose claims run out unless renewed (:class:`stepper.reuse.cache.ResultStore`)."""

    def renew(self, claims: Sequence[tuple[str, str]], lease_s: float) -> list[bool]:
        """Renew each ``(key, owner)`` claim for ``lease_s`` while ``owner`` holds it; whether each was."""
        ...


@dataclass
class _Held:
    store: Renewing
    key: str
    owner: str
    lease_s: float
    renewed_at: float  # time.monotonic() of the claim or its last renewal


class LeaseKeeper:
    """Renews the claims :meth:`holding` holds, from a daemon thread started on first use in each process."""

    def __init__(self) -> None:
        self._numbers = itertools.count()
        self._start()
        # A forked child (Celery's prefork pool) has neither the parent's thread nor its claims.
        os.register_at_fork(after_in_child=self._start)

    def _start(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, _Held] = {}
        self._started = False
        self._tick_s = IDLE_TICK_S
        self._wake = threading.Event()

    @contextmanager
    def holding(self, store: Renewing, key: str, owner: str, lease_s: float) -> Iterator[None]:
        """Keep ``owner``'s claim of ``key`` (just taken, for ``lease_s``) alive until the block ends."""
        number = next(self._numbers)
        with self._lock:
            self._held[number] = _Held(store, key, owner, lease_s, time.monotonic())
            if lease_s / RENEWALS_PER_LEASE < self._tick_s:  # the thread must look sooner than it planned
                self._tick_s = lease_s / RENEWALS_PER_LEASE
                self._wake.set()
            if not self._started:
                self._started = True
                threading.Thread(target=self._keep, name="stepper-claim-leases", daemon=True).start()
        try:
            yield
        finally:
            with self._lock:
                del self._held[number]

    def renew_due(self) -> None:
        """Renew every claim held for a quarter of its lease or more since it was taken or last renewed."""
        now = time.monotonic()
        with self._lock:
            due = [held for held in self._held.values() if now - held.renewed_at >= held.lease_s / RENEWALS_PER_LEASE]
        groups: dict[tuple[int, float], list[_Held]] = {}
        for held in due:
            groups.setdefault((id(held.store), held.lease_s), []).append(held)
        for group in groups.values():
            self._renew(group, now)

    def _renew(self, group: list[_Held], now: float) -> None:
        try:
            renewed = group[0].store.renew([(held.key, held.owner) for held in group], group[0].lease_s)
        except RedisError as exc:  # tried again next tick; a claim outlives three missed renewals
            logger.warning("could not renew %d claim(s) of computations in flight (%s)", len(group), exc)
            return
        for held, kept in zip(group, renewed, strict=True):
            held.renewed_at = now if kept else math.inf  # a claim lost is not asked for again
            if not kept:
                logger.warning(
                    "the claim of %s ran out before it was renewed: an identical request may compute it too",
                    held.key,
                )

    def _keep(self) -> None:
        while True:
            self._wake.wait(self._tick_s)
            self._wake.clear()
            try:
                self.renew_due()
            except Exception:  # the thread must outlive any one failure, or every claim would run out
                logger.exception("renewing the claims of computations in flight failed")
            with self._lock:
                leases = [held.lease_s / RENEWALS_PER_LEASE for held in self._held.values()]
                self._tick_s = min(leases, default=IDLE_TICK_S)


#: This process's keeper.
LEASES = LeaseKeeper()
