"""Celery's Redis result backend, storing a result in one round trip instead of two.

Before it stores a task's state, Celery's key-value backends read what is stored (``GET``) and keep a SUCCESS
already there (``BaseKeyValueStoreBackend._store_result``: a lost worker's late update must not overwrite a
result), then ``SETEX`` and ``PUBLISH`` in a transaction: two round trips on every task, and a window between
the check and the write. These backends do the same in one Lua script (``lua/result_store.lua``), atomically.
Everything else (reading results, chords, expiry, retries on connection errors) is Celery's. The writes that
ride with a task's result (:mod:`stepper.infra.result_riders`: its cache entries, and with a SUCCESS the removal
of its messages from kombu's unacknowledged index and hash) go in the same script when they are for this
backend's Redis database; cache entries for another go just before it.

stepper's configuration selects them through Celery's ``override_backends`` setting for the ``redis``,
``rediss`` and ``sentinel`` schemes (stepper.config.CELERY_DEFAULTS), so result backend URLs keep their form.
A backend that serializes to anything but JSON, or compresses results, stores them Celery's way (after writing
the riders): the script reads the stored status as JSON.

Celery builds a backend per thread (``app.backend`` is thread-local), and under gevent a thread is a greenlet,
so a gevent worker built one for every task: about 0.4 ms of CPU, most of it redis-py reading its own version
from the installed package's metadata, then a client, a connection pool and a new connection to Redis for its one
store. These backends read that version once per process, and in a worker (:func:`share_clients`) every backend
of an app shares one client and its pool, which the worker sizes for its concurrency (stepper.workers.pools).

Celery's Redis backend subscribes to a task's result channel as the task is sent (``on_task_call``), so that a
``get()`` later hears the result, and unsubscribes once it came: a ``SUBSCRIBE`` on the way to the broker, then
the result's ``PUBLISH`` handled and an ``UNSUBSCRIBE``. A sender that learns the outcome elsewhere (the gateway
relaying a chat's stream, whose ``done`` event carries what ends the answer) sends in :func:`unsubscribed`
instead. A ``get()`` of such a task still works: it subscribes then, and reads the stored result too (Celery's
``ResultConsumer.on_wait_for_pending``), so a result stored before it is found.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cached_property
from typing import Any, ClassVar

from celery import states
from celery.backends import redis as celery_redis
from celery.exceptions import BackendStoreError
from kombu.utils.encoding import bytes_to_str
from redis import Redis

from stepper.infra import lua, result_riders
from stepper.infra.result_riders import Delivery, Rider

#: The connection parameters Celery's ``_add_driver_info`` sets (redis-py's ``DriverInfo``, or its fallback).
_DRIVER_PARAMS = ("driver_info", "lib_name", "lib_version")
#: Per app, the client its backends share in each process (keyed by pid), once :func:`share_clients` was called.
_shared: weakref.WeakKeyDictionary[Any, dict[tuple[int, type], Redis]] | None = None
#: True in a block of :func:`unsubscribed`.
_unsubscribed: ContextVar[bool] = ContextVar("stepper_results_unsubscribed", default=False)


@contextmanager
def unsubscribed() -> Iterator[None]:
    """Tasks sent in this block (this thread or task's context) are not subscribed to as they are sent: for a
    sender that will not wait on their results, or learns them another way (see the module)."""
    token = _unsubscribed.set(True)
    try:
        yield
    finally:
        _unsubscribed.reset(token)


def share_clients() -> None:
    """Make every backend of an app in this process (and the processes it forks) use one client. For workers,
    whose pool of ``redis_max_connections`` is sized for every task storing at once; a producer's threads keep
    a client each, since each thread's result consumer holds a connection while it waits."""
    global _shared  # noqa: PLW0603  (one switch per process, set once at worker start-up)
    if _shared is None:
        _shared = weakref.WeakKeyDictionary()


class _OneRoundTripStore:
    """Mixed into Celery's Redis backends: ``_store_result`` as one script call, and cheap to build (see the
    module)."""

    #: What Celery's ``_add_driver_info`` adds to the connection parameters, worked out by the first backend.
    _driver_params: ClassVar[dict[str, Any] | None] = None

    def on_task_call(self, producer: Any, task_id: str) -> None:
        """Celery's subscription to the result of a task being sent, unless sent in :func:`unsubscribed`."""
        if not _unsubscribed.get():
            super().on_task_call(producer, task_id)  # type: ignore[misc]  # the Celery backend mixed in

    def _add_driver_info(self) -> None:
        """Celery's, once per process: redis-py's ``DriverInfo`` reads redis's version with importlib.metadata
        (about 0.3 ms), and Celery builds a backend per thread or greenlet."""
        connparams: dict[str, Any] = self.connparams  # type: ignore[attr-defined]
        known = _OneRoundTripStore._driver_params
        if known is None:
            super()._add_driver_info()  # type: ignore[misc]
            known = {name: connparams[name] for name in _DRIVER_PARAMS if name in connparams}
            _OneRoundTripStore._driver_params = known
        connparams.update(known)

    @cached_property
    def client(self) -> Redis:
        """Celery's client, or the one this app's backends share in a worker (:func:`share_clients`)."""
        backend: Any = self
        if _shared is None:
            return backend._create_client(**backend.connparams)  # type: ignore[no-any-return]
        clients = _shared.setdefault(backend.app, {})
        where = (os.getpid(), type(self))
        if where not in clients:  # two threads may both build one here: the first stored is kept
            clients.setdefault(where, backend._create_client(**backend.connparams))
        return clients[where]

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        backend: Any = self
        if backend.serializer != "json" or backend.compression:
            result_riders.write_or_log(task_id, result_riders.take(task_id))
            return super()._store_result(  # type: ignore[misc]
                task_id, result, state, traceback=traceback, request=request, **kwargs
            )
        meta = backend._get_result_meta(result=result, state=state, traceback=traceback, request=request)
        meta["task_id"] = bytes_to_str(task_id)
        value = backend.encode(meta)
        if len(value) > backend._MAX_STR_VALUE_SIZE:
            raise BackendStoreError("value too large for Redis backend", state=state, task_id=task_id)
        expires = backend.failure_expires if state == states.FAILURE else None
        if expires is None:
            expires = backend.expires
        riders = result_riders.take(task_id)
        if not result_riders.all_in(riders, self._database):
            result_riders.write_or_log(task_id, riders)
            riders = []
        # Only a SUCCESS acknowledges: after any other state Celery may still reject or requeue the message.
        deliveries = result_riders.take_deliveries(task_id, self._database) if state == states.SUCCESS else []
        backend.ensure(self._store, (backend.get_key_for_task(task_id), value, int(expires or 0), riders, deliveries))
        result_riders.removed(deliveries)
        return result

    @cached_property
    def _database(self) -> tuple[Any, ...] | None:
        return result_riders.database(self.client)

    def _store(
        self, key: bytes | str, value: str, expires_s: int, riders: list[Rider], deliveries: list[Delivery]
    ) -> None:
        keys, args = result_riders.script_arguments(riders, deliveries)
        lua.script(self.client, "result_store")(keys=[key, *keys], args=[value, expires_s, *args])


class RedisBackend(_OneRoundTripStore, celery_redis.RedisBackend):  # type: ignore[misc]  # Celery is untyped
    pass


class SentinelBackend(_OneRoundTripStore, celery_redis.SentinelBackend):  # type: ignore[misc]
    pass
