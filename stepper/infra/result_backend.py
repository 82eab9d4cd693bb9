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
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from celery import states
from celery.backends import redis as celery_redis
from celery.exceptions import BackendStoreError
from kombu.utils.encoding import bytes_to_str
from redis.commands.core import Script

from stepper.infra import lua, result_riders
from stepper.infra.result_riders import Delivery, Rider


class _OneRoundTripStore:
    """Mixed into Celery's Redis backends: ``_store_result`` as one script call."""

    @cached_property
    def _store_script(self) -> Script:
        return self.client.register_script(lua.source("result_store"))  # type: ignore[attr-defined,no-any-return]

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
        return result_riders.database(self.client)  # type: ignore[attr-defined]

    def _store(
        self, key: bytes | str, value: str, expires_s: int, riders: list[Rider], deliveries: list[Delivery]
    ) -> None:
        keys, args = result_riders.script_arguments(riders, deliveries)
        self._store_script(keys=[key, *keys], args=[value, expires_s, *args])


class RedisBackend(_OneRoundTripStore, celery_redis.RedisBackend):  # type: ignore[misc]  # Celery is untyped
    pass


class SentinelBackend(_OneRoundTripStore, celery_redis.SentinelBackend):  # type: ignore[misc]
    pass
