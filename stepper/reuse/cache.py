"""Results reused: a cache with stale-while-revalidate, single-flight, and idempotency keys.

Keys (see :mod:`stepper.infra.keys`) carry TTLs. A cached entry is
fresh for ``fresh_s`` and then served stale for ``stale_s`` more while one refresh (deduplicated across the
fleet with ``SET NX``) computes it again. Identical requests that arrive while one is being computed wait
for it (single-flight) instead of calling a provider again. The broker's Redis must not evict keys
(``maxmemory-policy noeviction``); give the cache its own Redis (``stepper_cache["url"]``) to let it evict.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel
from redis import Redis

from stepper.config import current_settings
from stepper.infra import keys, lua
from stepper.infra.connections import cache_redis
from stepper.schemas import ChatRequest, Kind
from stepper.schemas.common import TaskRequest
from stepper.settings import CacheSettings, CacheWindow, StepperSettings

POLL_START_S = 0.02
POLL_MAX_S = 0.5


@dataclass(frozen=True)
class Hit:
    result: dict[str, Any]
    fresh: bool


@dataclass(frozen=True)
class Probe:
    """What one look at the cache found: the stored result, or whether this caller now owns the computation."""

    hit: Hit | None
    claimed: bool


def _digest(material: Any) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@cache
def output_version(model: type[BaseModel]) -> str:
    """Changes whenever the output model's schema does, so old entries are never served in a new shape."""
    return _digest(model.model_json_schema())[:16]


def cache_key(kind: Kind, request: TaskRequest, settings: StepperSettings, output_model: type[BaseModel]) -> str:
    """Over the kind, the request without its run options, the mode and chain (providers and models), and
    the output model's version."""
    chain = [str(entry) for entry in settings.chains[kind]]
    material = [kind, request.content(), settings.mode, chain, output_version(output_model)]
    return keys.cache_entry(kind, _digest(material))


def idempotency_key(kind: Kind, key: str) -> str:
    return keys.idempotency(kind, _digest(key))


def cacheable(kind: Kind, request: TaskRequest, settings: CacheSettings) -> bool:
    """Whether this request's result may be read from and written to the cache."""
    if request.cache == "bypass" or kind not in settings.windows:
        return False
    if request.cache == "use":
        return True
    # A chat sampled at a temperature above zero is a new answer each time: caching it changes its meaning.
    return not (isinstance(request, ChatRequest) and request.temperature != 0)


class ResultCache:
    def __init__(self, client: Redis, settings: CacheSettings) -> None:
        self.client = client
        self.settings = settings
        self._probe = client.register_script(lua.source("cache_probe"))

    def probe(self, key: str, owner: str, lease_s: float, window: CacheWindow | None = None) -> Probe:
        """The stored result, or the claim of its computation for ``owner`` (kept by a redelivered owner)."""
        raw, claimed = self._probe(keys=[key, keys.flight(key)], args=[owner, max(1, int(lease_s * 1000))])
        return Probe(None if raw is None else self._hit(raw, window), bool(claimed))

    def finish(self, key: str, result: dict[str, Any], ttl_s: float) -> None:
        """Store the result and release the computation's claim, in one round trip."""
        entry = json.dumps({"result": result, "stored_at": time.time()}, separators=(",", ":"))
        pipe = self.client.pipeline(transaction=False)
        pipe.set(key, entry, px=max(1, int(ttl_s * 1000)))
        pipe.delete(keys.flight(key))
        pipe.execute()

    def get(self, key: str, window: CacheWindow | None = None) -> Hit | None:
        """The stored result; without a window (idempotency) it never goes stale."""
        raw = self.client.get(key)
        return None if raw is None else self._hit(raw, window)

    @staticmethod
    def _hit(raw: bytes | str, window: CacheWindow | None) -> Hit:
        entry = json.loads(raw)
        return Hit(entry["result"], window is None or time.time() - entry["stored_at"] < window.fresh_s)

    def claim_refresh(self, key: str, ttl_s: float) -> bool:
        """True for exactly one caller per stale period, fleet-wide: that one enqueues the refresh."""
        return bool(self.client.set(keys.refreshing(key), b"1", nx=True, px=max(1, int(ttl_s * 1000))))

    def refreshed(self, key: str) -> None:
        self.client.delete(keys.refreshing(key))

    def claim_flight(self, key: str, owner: str, lease_s: float) -> bool:
        """Become the one computing ``key`` (or still be, after a redelivery of the same task)."""
        flight = keys.flight(key)
        if self.client.set(flight, owner.encode(), nx=True, px=max(1, int(lease_s * 1000))):
            return True
        return self.client.get(flight) == owner.encode()

    def land(self, key: str) -> None:
        self.client.delete(keys.flight(key))

    def wait_for(self, key: str, timeout_s: float) -> dict[str, Any] | None:
        """Wait for the computation in flight to store its result; None if it gave up (or its worker died)."""
        deadline = time.monotonic() + timeout_s
        pause = POLL_START_S
        while time.monotonic() < deadline:
            raw = self.client.get(key)
            if raw is not None:
                result: dict[str, Any] = json.loads(raw)["result"]
                return result
            if not self.client.exists(keys.flight(key)):
                hit = self.get(key)  # it may have landed between the two reads
                return None if hit is None else hit.result
            time.sleep(pause)
            pause = min(POLL_MAX_S, pause * 1.5)
        return None


def result_cache(redis_wait_s: float = 0.0) -> ResultCache:
    """This process's cache, on :func:`stepper.infra.connections.cache_redis` (``redis_wait_s`` as there)."""
    return _cache_on(cache_redis(redis_wait_s))


@cache
def _cache_on(client: Redis) -> ResultCache:
    return ResultCache(client, current_settings().cache)
