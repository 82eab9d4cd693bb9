"""Writes that ride with a task's stored result: the result cache's entry goes in the same round trip.

A worker that computed an answer writes it to the result cache, and releases its single-flight claim, a moment
before Celery stores the same answer as the task's result: two round trips for one answer. When the cache and
the result backend are the same Redis database, stepper's result backend (:mod:`stepper.infra.result_backend`)
makes the cache write part of its store script instead. The entry is then written atomically with the result
and before the result is published, so a producer that gets the result and asks again finds it cached.

A write is held for its task from Celery's ``task_prerun`` signal to ``task_postrun`` (connected in
:mod:`stepper.workers.process`); the store takes what its task holds. Whatever is still held at ``task_postrun``
is written then: no result was stored (``ignore_result``, an eager call), or the backend stores elsewhere. A
write for a task that is not held (outside a worker) is not deferred at all: :func:`defer` says so and the
caller writes it itself.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rider:
    """``SET key value PX px_ms``, then ``DEL`` of each key of ``releases``, on ``client``'s Redis."""

    client: Redis
    key: str
    value: str
    px_ms: int
    releases: tuple[str, ...] = ()


_lock = threading.Lock()
#: Task id -> the writes held for its stored result, for the tasks running in this process.
_held: dict[str, list[Rider]] = {}


def hold(task_id: str) -> None:
    """Start holding writes for ``task_id`` (Celery's ``task_prerun``)."""
    with _lock:
        _held.setdefault(task_id, [])


def defer(task_id: str, rider: Rider) -> bool:
    """Hold ``rider`` until ``task_id``'s result is stored; False when that task is not held (write it now)."""
    with _lock:
        riders = _held.get(task_id)
        if riders is None:
            return False
        riders.append(rider)
        return True


def take(task_id: str) -> list[Rider]:
    """The writes held for ``task_id``, handed to its result store (which must write them); it stays held."""
    with _lock:
        riders = _held.get(task_id)
        if not riders:
            return []
        _held[task_id] = []
        return riders


def release(task_id: str) -> None:
    """Stop holding writes for ``task_id`` and write what no store took (Celery's ``task_postrun``). A Redis
    error is logged, not raised: the entry is a cache entry, and the claim it would release runs out."""
    with _lock:
        riders = _held.pop(task_id, [])
    try:
        write(riders)
    except RedisError as exc:
        log.warning("could not write %d cache entries of task %s (%s)", len(riders), task_id, exc)


def write(riders: list[Rider]) -> None:
    """Write ``riders`` now, one pipeline per Redis client."""
    by_client: dict[int, tuple[Redis, list[Rider]]] = {}
    for rider in riders:
        by_client.setdefault(id(rider.client), (rider.client, []))[1].append(rider)
    for client, theirs in by_client.values():
        pipe = client.pipeline(transaction=False)
        for rider in theirs:
            pipe.set(rider.key, rider.value, px=rider.px_ms)
            if rider.releases:
                pipe.delete(*rider.releases)
        pipe.execute()


def script_arguments(riders: list[Rider]) -> tuple[list[str], list[Any]]:
    """``riders`` as the KEYS and ARGV that follow a script's own (``lua/result_store.lua``): the keys set, then
    the keys deleted; the number set, then each one's value and PX."""
    deleted = [key for rider in riders for key in rider.releases]
    values: list[Any] = [len(riders)]
    for rider in riders:
        values += [rider.value, rider.px_ms]
    return [rider.key for rider in riders] + deleted, values


def all_in(riders: list[Rider], database_: tuple[Any, ...] | None) -> bool:
    """Whether every one of ``riders`` writes to ``database_`` (a :func:`database`; never when it is None)."""
    return database_ is not None and all(database(rider.client) == database_ for rider in riders)


def database(client: Redis) -> tuple[Any, ...] | None:
    """Where ``client``'s commands land: TCP host, port and database, or a Unix socket and database. None for
    anything else (a Sentinel-managed pool, a cluster), which is never taken for the same database."""
    pool = getattr(client, "connection_pool", None)
    if pool is None or hasattr(pool, "service_name"):
        return None
    options = pool.connection_kwargs
    if "path" in options:
        return ("unix", options["path"], int(options.get("db") or 0))
    return ("tcp", options.get("host"), int(options.get("port") or 6379), int(options.get("db") or 0))
