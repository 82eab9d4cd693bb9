"""The producer's half of reuse: answer from the cache, or from the first submission of an idempotency key,
before anything is enqueued. The worker's half (:mod:`stepper.reuse.serving`) covers what arrives anyway."""

from __future__ import annotations

from typing import Any

from stepper.config import current_settings
from stepper.families import Family
from stepper.infra import keys
from stepper.infra.connections import state_redis
from stepper.reuse.cache import ResultStore, cache_key, cacheable, idempotency_key, result_cache
from stepper.schemas.common import TaskRequest


def claim_idempotency_key(family: Family, request: TaskRequest, task_id: str) -> str | None:
    """None when ``task_id`` now owns the request's idempotency key (send it under that id); otherwise the id of
    the task that claimed the key first, within ``stepper_cache["idempotency_window_s"]``."""
    assert request.idempotency_key is not None
    claim = keys.idempotency_task(idempotency_key(family.kind, request.idempotency_key))
    window_ms = int(current_settings().cache.idempotency_window_s * 1000)
    client = state_redis()
    if client.set(claim, task_id.encode(), nx=True, px=window_ms):
        return None
    first = client.get(claim)
    return first.decode() if isinstance(first, bytes) else task_id


def cached_result(
    family: Family, request: TaskRequest, app: Any, *, results: ResultStore | None = None
) -> dict[str, Any] | None:
    """The cached result of ``request`` (marked ``cached: true``), or None. A stale one is returned too, and
    exactly one caller fleet-wide enqueues its refresh. ``results`` defaults to this process's Redis cache."""
    settings = current_settings()
    if not cacheable(family.kind, request, settings.cache) or request.cache == "refresh":
        return None
    key = cache_key(family.kind, request, settings, family.output_model)
    if results is None:
        results = result_cache()
    hit = results.get(key, settings.cache.windows[family.kind])
    if hit is None:
        return None
    if not hit.fresh:
        refresh_once(results, key, family, request, app)
    return as_cached(hit.result)


def as_cached(result: dict[str, Any]) -> dict[str, Any]:
    return {**result, "cached": True}


def refresh_once(results: ResultStore, key: str, family: Family, request: TaskRequest, app: Any = None) -> None:
    """Enqueue the refresh of the stale entry ``key`` unless another caller, fleet-wide, already did: one refresh
    per stale period. The claim lasts until the refresh task ran, at most its time limit (``task_time_limit``)."""
    if app is None:
        from stepper.celery import app
    if results.claim_refresh(key, float(app.conf.task_time_limit or 300)):
        enqueue_refresh(family, request, app)


def enqueue_refresh(family: Family, request: TaskRequest, app: Any = None) -> None:
    """One background recomputation of a stale entry, at batch priority, without the caller's run options."""
    if app is None:
        from stepper.celery import app
    app.send_task(f"stepper.{family.kind}", kwargs={**request.content(), "cache": "refresh"}, priority="batch")
