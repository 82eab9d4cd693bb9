"""Writes that ride with a task's stored result: its cache entry and its acknowledgement, in the same round trip.

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

The acknowledgement rides the same way. With ``acks_late`` Celery acknowledges a message once its task has run
and its result is stored; on a Redis broker kombu then removes the message from its unacknowledged index and
hash (``kombu.transport.redis.QoS.ack``), one more round trip. stepper's transport
(:mod:`stepper.infra.redis_transport`) registers each task message it delivers (:func:`delivered`); a store of
that task's SUCCESS in the same database takes the registration (:func:`take_deliveries`) and removes the
message in its script, and the transport's acknowledgement then skips Redis (:func:`acknowledged`). A result
stored is then never left beside a message still waiting to be redelivered, even for a moment. Only a SUCCESS
acknowledges: after any other state Celery may still reject or requeue the message. In a prefork worker the
parent delivers and the child stores, so nothing rides and the parent acknowledges as kombu does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
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


def _recorded() -> None:
    """A delivery whose record was written before it was registered."""


@dataclass(frozen=True)
class Delivery:
    """A task message delivered by a Redis broker, as kombu's QoS keeps it until it is acknowledged: under
    ``delivery_tag`` in the sorted set ``index_key`` and the hash ``hash_key`` of ``database``. ``confirm``
    returns once those entries are written (the transport sends the record without waiting for it)."""

    database: tuple[Any, ...] | None
    index_key: str
    hash_key: str
    delivery_tag: str
    confirm: Callable[[], None] = field(default=_recorded, compare=False, repr=False)


_lock = threading.Lock()
#: Task id -> the writes held for its stored result, for the tasks running in this process.
_held: dict[str, list[Rider]] = {}
#: Task id -> its messages delivered and not yet acknowledged; delivery tag -> task id; the tags a store removed.
_deliveries: dict[str, list[Delivery]] = {}
_task_of: dict[str, str] = {}
_removed: set[str] = set()


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
    """Stop holding writes for ``task_id`` and write what no store took (Celery's ``task_postrun``)."""
    with _lock:
        riders = _held.pop(task_id, [])
    write_or_log(task_id, riders)


def write_or_log(task_id: str, riders: list[Rider]) -> None:
    """Write ``riders`` of task ``task_id`` now; a Redis error is logged, not raised. They are cache entries, and
    the task's answer is computed: it must not fail for them (a claim they would release runs out by itself)."""
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


def delivered(task_id: str, delivery: Delivery) -> None:
    """Task ``task_id``'s message was delivered and awaits its acknowledgement (the transport's ``QoS.append``)."""
    with _lock:
        _deliveries.setdefault(task_id, []).append(delivery)
        _task_of[delivery.delivery_tag] = task_id


def take_deliveries(task_id: str, database_: tuple[Any, ...] | None) -> list[Delivery]:
    """The messages of ``task_id`` delivered from ``database_`` and not yet acknowledged, all kept under the same
    index and hash, for its store to remove (it reports them with :func:`removed`); none when ``database_`` is
    None. Each one's record is confirmed first; when that raises (a RedisError), none is taken, and a store tried
    again takes them."""
    if database_ is None:
        return []
    with _lock:
        confirming = _taken(task_id, database_)
    for delivery in confirming:
        delivery.confirm()
    with _lock:
        taken = _taken(task_id, database_)
        if kept := [delivery for delivery in _deliveries.pop(task_id, []) if delivery not in taken]:
            _deliveries[task_id] = kept
        return taken


def _taken(task_id: str, database_: tuple[Any, ...]) -> list[Delivery]:
    """What :func:`take_deliveries` takes, with the lock held."""
    ours = [delivery for delivery in _deliveries.get(task_id, []) if delivery.database == database_]
    keys = (ours[0].index_key, ours[0].hash_key) if ours else None
    return [delivery for delivery in ours if (delivery.index_key, delivery.hash_key) == keys]


def removed(deliveries: list[Delivery]) -> None:
    """``deliveries`` were removed from the unacknowledged index and hash with their task's result."""
    with _lock:
        _removed.update(delivery.delivery_tag for delivery in deliveries)


def acknowledged(delivery_tag: str) -> bool:
    """Forget the message ``delivery_tag`` (the transport acknowledges or rejects it); True when its task's store
    removed it already, so that the acknowledgement has nothing left to do in Redis."""
    with _lock:
        task_id = _task_of.pop(delivery_tag, None)
        if task_id is not None and task_id in _deliveries:
            left = [delivery for delivery in _deliveries[task_id] if delivery.delivery_tag != delivery_tag]
            if left:
                _deliveries[task_id] = left
            else:
                del _deliveries[task_id]
        if delivery_tag in _removed:
            _removed.discard(delivery_tag)
            return True
        return False


def script_arguments(riders: list[Rider], deliveries: list[Delivery]) -> tuple[list[str], list[Any]]:
    """``riders`` and ``deliveries`` as the KEYS and ARGV that follow the store script's own
    (``lua/result_store.lua``): the keys set, the keys deleted, then the unacknowledged index and hash; the three
    counts, each key's value and PX, then the delivery tags. The deliveries must share one index and hash."""
    deleted = [key for rider in riders for key in rider.releases]
    keys = [rider.key for rider in riders] + deleted
    values: list[Any] = [len(riders), len(deleted), len(deliveries)]
    for rider in riders:
        values += [rider.value, rider.px_ms]
    if deliveries:
        keys += [deliveries[0].index_key, deliveries[0].hash_key]
        values += [delivery.delivery_tag for delivery in deliveries]
    return keys, values


def all_in(riders: list[Rider], database_: tuple[Any, ...] | None) -> bool:
    """Whether every one of ``riders`` writes to ``database_`` (a :func:`database`; never when it is None)."""
    return database_ is not None and all(writes_to(rider.client, database_) for rider in riders)


def writes_to(client: Redis, database_: tuple[Any, ...] | None) -> bool:
    """Whether ``client``'s commands land in ``database_`` (a :func:`database`; never when it is None): the test
    for a write to ride in another's round trip."""
    return database_ is not None and database(client) == database_


def database(client: Redis) -> tuple[Any, ...] | None:
    """Where ``client``'s commands land: TCP host, port and database, a Unix socket and database, or, for the
    master of a Sentinel-managed service, its name, its sentinels and the database (every client of that master
    follows it through a failover). None for anything else (a replica, a cluster), which is never taken for the
    same database."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        return None
    options = pool.connection_kwargs
    number = int(options.get("db") or 0)
    if hasattr(pool, "service_name"):
        manager = getattr(pool, "sentinel_manager", None)
        if manager is None or not getattr(pool, "is_master", False):
            return None
        sentinels = sorted(_address(sentinel.connection_pool.connection_kwargs) for sentinel in manager.sentinels)
        return ("sentinel", pool.service_name, tuple(sentinels), number)
    if "path" in options:
        return ("unix", options["path"], number)
    return ("tcp", *_address(options), number)


def _address(options: dict[str, Any]) -> tuple[str | None, int]:
    return options.get("host"), int(options.get("port") or 6379)
