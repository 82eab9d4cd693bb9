"""Celery's Redis result backend, storing a result in one round trip instead of two.

Before it stores a task's state, Celery's key-value backends read what is stored (``GET``) and keep a SUCCESS
already there (``BaseKeyValueStoreBackend._store_result``: a lost worker's late update must not overwrite a
result), then ``SETEX`` and ``PUBLISH`` in a transaction: two round trips on every task, and a window between
the check and the write. These backends do the same in one Lua script (``lua/result_store.lua``), atomically.
Everything else (reading results, chords, expiry, retries on connection errors) is Celery's.

stepper's configuration selects them through Celery's ``override_backends`` setting for the ``redis``,
``rediss`` and ``sentinel`` schemes (stepper.config.CELERY_DEFAULTS), so result backend URLs keep their form.
A backend that serializes to anything but JSON, or compresses results, stores them Celery's way: the script
reads the stored status as JSON.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from celery import states
from celery.backends import redis as celery_redis
from celery.exceptions import BackendStoreError
from kombu.utils.encoding import bytes_to_str
from redis.commands.core import Script

from stepper.infra import lua


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
        backend.ensure(self._store, (backend.get_key_for_task(task_id), value, int(expires or 0)))
        return result

    def _store(self, key: bytes | str, value: str, expires_s: int) -> None:
        self._store_script(keys=[key], args=[value, expires_s])


class RedisBackend(_OneRoundTripStore, celery_redis.RedisBackend):  # type: ignore[misc]  # Celery is untyped
    pass


class SentinelBackend(_OneRoundTripStore, celery_redis.SentinelBackend):  # type: ignore[misc]
    pass
