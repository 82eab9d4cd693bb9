"""Optional parameters a provider's model refused, remembered fleet-wide.

When a server says it does not take an optional parameter stepper sent (``stream_options`` on a strict
self-hosted server, ``temperature`` on a reasoning model), the adapter records it here and leaves it out of
later calls from every worker. The record is a Redis set per provider and model that expires
``stepper_capability_ttl_s`` after the last refusal, so a server upgraded meanwhile gets the parameter again.
Each process keeps what it read for ``LOCAL_TTL_S``, so a call costs no extra round trip.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from functools import cache
from typing import Protocol, cast

from redis import Redis
from redis.exceptions import RedisError

from stepper.config import current_settings
from stepper.infra import keys
from stepper.infra.connections import state_redis

log = logging.getLogger(__name__)

#: How long a process trusts what it last read from Redis (seconds).
LOCAL_TTL_S = 30.0


class Capabilities(Protocol):
    def refused(self, provider: str, model: str) -> frozenset[str]:
        """The optional parameters ``provider`` serving ``model`` refused lately (top-level request fields)."""
        ...

    def remember(self, provider: str, model: str, parameter: str) -> None:
        """Record that ``provider`` serving ``model`` refused ``parameter``."""
        ...


class MemoryCapabilities:
    """One process's memory, for tests and for a process without Redis."""

    def __init__(self) -> None:
        self._refused: dict[tuple[str, str], frozenset[str]] = {}
        self._lock = threading.Lock()

    def refused(self, provider: str, model: str) -> frozenset[str]:
        with self._lock:
            return self._refused.get((provider, model), frozenset())

    def remember(self, provider: str, model: str, parameter: str) -> None:
        with self._lock:
            self._refused[(provider, model)] = self._refused.get((provider, model), frozenset()) | {parameter}


class RedisCapabilities:
    """The fleet's memory in Redis, read through a short-lived local copy. Redis unreachable: the local copy
    serves (a parameter is at worst refused once more per process)."""

    def __init__(self, client: Redis, ttl_s: float) -> None:
        self._client = client
        self._ttl_ms = int(ttl_s * 1000)
        self._local: dict[tuple[str, str], tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def refused(self, provider: str, model: str) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            read_at, known = self._local.get((provider, model), (float("-inf"), frozenset()))
        if now - read_at < LOCAL_TTL_S:
            return known
        try:
            members = cast(set[bytes], self._client.smembers(keys.refused_parameters(provider, model)))
        except RedisError as exc:
            log.debug("could not read %s's refused parameters (%s)", provider, exc)
            return known
        known = frozenset(member.decode() for member in members)
        with self._lock:
            self._local[(provider, model)] = (now, known)
        return known

    def remember(self, provider: str, model: str, parameter: str) -> None:
        with self._lock:
            _, known = self._local.get((provider, model), (0.0, frozenset()))
            self._local[(provider, model)] = (time.monotonic(), known | {parameter})
        key = keys.refused_parameters(provider, model)
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.sadd(key, parameter)
            pipe.pexpire(key, self._ttl_ms)
            pipe.execute()
        except RedisError as exc:
            log.warning("could not record that %s refused %s fleet-wide (%s)", provider, parameter, exc)


_override: list[Capabilities] = []


@cache
def _configured(pid: int) -> Capabilities:
    del pid  # part of the cache key: a forked child makes its own
    return RedisCapabilities(state_redis(), current_settings().capability_ttl_s)


def capabilities() -> Capabilities:
    """This process's memory of refused parameters: the fleet's, in the state Redis, unless replaced."""
    return _override[-1] if _override else _configured(os.getpid())


def set_capabilities(memory: Capabilities | None) -> None:
    """Replace this process's memory (a test's); None restores the fleet's."""
    _override.clear()
    if memory is not None:
        _override.append(memory)
