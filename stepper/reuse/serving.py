"""How a validated request is served: from the cache, by the computation already in flight, or by the chain.

Written once for every kind; the order is: a redelivered task's stored result, then the idempotency key,
then the cache (fresh, or stale with one refresh enqueued), then single-flight around the computation.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from stepper.config import current_settings
from stepper.families import Family
from stepper.infra import metrics
from stepper.reuse.cache import Admitting, ResultStore, cache_key, cacheable, idempotency_key, result_cache
from stepper.reuse.leases import LEASES, run_owner
from stepper.reuse.submitting import as_cached, refresh_once
from stepper.schemas.common import TaskRequest

Compute = Callable[[], dict[str, Any]]


def serve(
    family: Family,
    request: TaskRequest,
    task_id: str,
    compute: Compute,
    *,
    results: ResultStore | None = None,
    admitting: Admitting | None = None,
) -> dict[str, Any]:
    """The task's result for ``request``, computing it (``compute`` runs the chain) only when it must.

    ``results`` is where results are reused; by default this process's Redis cache (:func:`result_cache`).
    ``admitting``: the admission of the chain's first call, asked with a probe that claims the computation.
    """
    settings = current_settings()
    if request.idempotency_key is None and not cacheable(family.kind, request, settings.cache):
        return compute()  # nothing to reuse, and no claim to hold
    if results is None:
        results = result_cache(settings.recovery.redis_wait_s)
    flight = Flight(results, run_owner(task_id), settings.recovery.lease_s, compute)
    if request.idempotency_key is not None:
        key = idempotency_key(family.kind, request.idempotency_key)
        probe = results.probe(key, flight.owner, flight.lease_s, admitting=admitting)
        if probe.hit is not None:
            return as_cached(probe.hit.result)
        ttl_s = settings.cache.idempotency_window_s
        # Written the moment the answer exists, not with the stored result: a worker that dies in between must
        # leave as short a window as possible in which a redelivery would do the work (a charge, a send) again.
        return flight.run(key, None, probe.claimed, ttl_s=ttl_s)
    window = settings.cache.windows[family.kind]
    ttl_s = window.fresh_s + window.stale_s
    key = cache_key(family.kind, request, settings, family.output_model)
    if request.cache == "refresh":
        try:
            claimed = results.claim_flight(key, flight.owner, flight.lease_s)
            return flight.run(key, task_id, claimed, ttl_s=ttl_s)
        finally:
            results.refreshed(key)
    probe = results.probe(key, flight.owner, flight.lease_s, window, admitting)
    hit = probe.hit
    metrics.CACHE.labels(family.kind, "miss" if hit is None else "hit" if hit.fresh else "stale").inc()
    if hit is not None:
        if not hit.fresh:
            refresh_once(results, key, family, request)
        return as_cached(hit.result)
    return flight.run(key, task_id, probe.claimed, ttl_s=ttl_s)


def probes_first(family: Family, request: TaskRequest) -> bool:
    """Whether :func:`serve` asks the result store (the idempotency entry, or the cache) before it computes:
    that probe then asks the first call's admission (``admitting``) in its own round trip."""
    if request.idempotency_key is not None:
        return True
    return request.cache != "refresh" and cacheable(family.kind, request, current_settings().cache)


@dataclass(frozen=True)
class Flight:
    """One run's single flight: ``owner`` (:func:`~stepper.reuse.leases.run_owner`) claims a computation for
    ``lease_s`` at a time, and ``compute`` runs it."""

    results: ResultStore
    owner: str
    lease_s: float
    compute: Compute

    def run(self, key: str, rides_with: str | None, claimed: bool, *, ttl_s: float) -> dict[str, Any]:
        """Compute when this run claimed the computation, holding the claim while it computes; otherwise wait for
        the run that did. The entry rides with the stored result of task ``rides_with`` (None: written at once)."""
        if not claimed:
            waited = self.results.wait_for(key, current_settings().cache.single_flight_wait_s)
            if waited is not None:
                return as_cached(waited)
            # The computation we waited for was abandoned (it failed, or its worker died and its claim ran out):
            # do it ourselves, holding the claim unless another waiter took it first.
            claimed = self.results.claim_flight(key, self.owner, self.lease_s)
        try:
            with LEASES.holding(self.results, key, self.owner, self.lease_s) if claimed else nullcontext():
                result = self.compute()
        except BaseException:
            if claimed:
                self.results.land(key, self.owner)
            raise
        self.results.finish(key, rides_with, result, ttl_s)
        return result
