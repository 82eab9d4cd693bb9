"""The result cache's twin in one process's memory: :mod:`stepper.reuse.cache` without a Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stepper.infra import keys
from stepper.reuse.cache import Admitting, Hit, Probe, poll_for_result, stored_entry, stored_hit, ttl_ms
from stepper.settings import CacheWindow


@dataclass(frozen=True)
class _Held:
    value: str
    expires_at_s: float


class MemoryResultCache:
    """A :class:`~stepper.reuse.cache.ResultStore` in this process's memory, with the Redis store's semantics.

    It holds the same keys as Redis (an entry, its ``:flight`` claim, its ``:refreshing`` claim), each until its TTL
    runs out on ``clock``, which also judges freshness; one lock makes every method atomic, as a Lua script or
    ``SET NX`` is in Redis, so threads share it safely. Expired keys are dropped when next touched. Not shared
    between processes.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._held: dict[str, _Held] = {}

    def probe(
        self,
        key: str,
        owner: str,
        lease_s: float,
        window: CacheWindow | None = None,
        admitting: Admitting | None = None,
    ) -> Probe:
        """The stored result, or the claim of its computation for the run ``owner`` for ``lease_s``.
        ``admitting`` is never asked here: memory costs no round trip, and the call asks its admission itself."""
        del admitting
        with self._lock:
            raw = self._read(key)
            if raw is not None:
                return Probe(stored_hit(raw, window, self.clock()), claimed=False)
            return Probe(None, self._set_nx(keys.flight(key), owner, lease_s))

    def finish(self, key: str, rides_with: str | None, result: dict[str, Any], ttl_s: float) -> None:
        """Store the result for ``ttl_s`` and release the computation's claim, at once."""
        with self._lock:
            self._write(key, stored_entry(result, self.clock()), ttl_s)
            self._held.pop(keys.flight(key), None)

    def get(self, key: str, window: CacheWindow | None = None) -> Hit | None:
        """The stored result; without a window (idempotency) it never goes stale."""
        with self._lock:
            raw = self._read(key)
            return None if raw is None else stored_hit(raw, window, self.clock())

    def claim_refresh(self, key: str, ttl_s: float) -> bool:
        """True for exactly one caller per ``ttl_s`` (until :meth:`refreshed`): that one enqueues the refresh."""
        with self._lock:
            return self._set_nx(keys.refreshing(key), "1", ttl_s)

    def refreshed(self, key: str) -> None:
        with self._lock:
            self._held.pop(keys.refreshing(key), None)

    def claim_flight(self, key: str, owner: str, lease_s: float) -> bool:
        """Become the one computing ``key`` for ``lease_s``, unless another run holds its claim."""
        with self._lock:
            return self._set_nx(keys.flight(key), owner, lease_s)

    def renew(self, claims: Sequence[tuple[str, str]], lease_s: float) -> list[bool]:
        """Renew each claim its owner still holds, for ``lease_s`` from now."""
        with self._lock:
            return [self._renew(keys.flight(key), owner, lease_s) for key, owner in claims]

    def land(self, key: str, owner: str) -> None:
        """Release ``owner``'s claim, unless another run holds it by now."""
        flight = keys.flight(key)
        with self._lock:
            if self._read(flight) == owner:
                del self._held[flight]

    def wait_for(self, key: str, timeout_s: float) -> dict[str, Any] | None:
        """Wait for the computation in flight to store its result; None if it gave up (or its lease ran out)."""
        return poll_for_result(lambda: self.get(key), lambda: self._in_flight(key), timeout_s=timeout_s)

    def _in_flight(self, key: str) -> bool:
        with self._lock:
            return self._read(keys.flight(key)) is not None

    # The helpers below run under the lock.

    def _read(self, name: str) -> str | None:
        held = self._held.get(name)
        if held is None:
            return None
        if held.expires_at_s <= self.clock():
            del self._held[name]
            return None
        return held.value

    def _write(self, name: str, value: str, ttl_s: float) -> None:
        self._held[name] = _Held(value, self.clock() + ttl_ms(ttl_s) / 1000)

    def _set_nx(self, name: str, value: str, ttl_s: float) -> bool:
        if self._read(name) is not None:
            return False
        self._write(name, value, ttl_s)
        return True

    def _renew(self, flight: str, owner: str, lease_s: float) -> bool:
        """``flight_renew.lua``: a new lease for the claim ``owner`` still holds."""
        if self._read(flight) != owner:
            return False
        self._write(flight, owner, lease_s)
        return True
