"""Results reused: a cache with stale-while-revalidate, single-flight, and idempotency keys.

Keys (see :mod:`stepper.infra.keys`) carry TTLs. A cached entry is
fresh for ``fresh_s`` and then served stale for ``stale_s`` more while one refresh (deduplicated across the
fleet with ``SET NX``) computes it again. Identical requests that arrive while one is being computed wait
for it (single-flight) instead of calling a provider again. The broker's Redis must not evict keys
(``maxmemory-policy noeviction``); give the cache its own Redis (``stepper_cache["url"]``) to let it evict.

:class:`ResultStore` is the store's interface, :class:`ResultCache` its Redis implementation;
:class:`~stepper.reuse.cache_memory.MemoryResultCache` is its twin in one process's memory, for tests without a Redis.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from pydantic import BaseModel
from redis import Redis
from redis.cluster import RedisCluster

from stepper.config import current_settings
from stepper.infra import keys, lua, result_riders
from stepper.infra.connections import cache_redis
from stepper.infra.lua import ScriptCall
from stepper.infra.result_riders import Rider
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


class Admitting(Protocol):
    """The admission of the call a claimed computation makes first (stepper.guards.breaker.AdmissionAhead): a probe
    that misses and claims the computation asks it in its own round trip, where the store can, and hands it the
    answer."""

    @property
    def client(self) -> Redis:
        """A client of the Redis the admission's keys live in."""
        ...

    @property
    def call(self) -> ScriptCall:
        """admission.lua's ``admit``, with its keys and arguments (worked out when the probe asks it)."""
        ...

    def answered(self, reply: Any) -> None:
        """Keep what ``admit`` answered."""
        ...


class ResultStore(Protocol):
    """Where results are kept for reuse: entries with a TTL, judged fresh or stale by their window, and the claims
    (single flight, one refresh per stale period) that keep identical requests from computing twice."""

    def probe(
        self,
        key: str,
        owner: str,
        lease_s: float,
        window: CacheWindow | None = None,
        admitting: Admitting | None = None,
    ) -> Probe:
        """The stored result, or the claim of its computation for the run ``owner`` (:func:`stepper.reuse.leases.
        run_owner`) for ``lease_s``; with the claim, ``admitting`` answered where the store can ask it in the same
        round trip. A claim held by another run is never taken, whichever task that run belongs to."""
        ...

    def finish(self, key: str, rides_with: str | None, result: dict[str, Any], ttl_s: float) -> None:
        """Store the result for ``ttl_s`` and release the claim of its computation, with the stored result of task
        ``rides_with`` where the store can (None: at once)."""
        ...

    def get(self, key: str, window: CacheWindow | None = None) -> Hit | None:
        """The stored result; without a window (idempotency) it never goes stale."""
        ...

    def claim_refresh(self, key: str, ttl_s: float) -> bool:
        """True for exactly one caller per ``ttl_s``: that one enqueues the refresh."""
        ...

    def refreshed(self, key: str) -> None:
        """Release the refresh claim: the next stale read may enqueue another."""
        ...

    def claim_flight(self, key: str, owner: str, lease_s: float) -> bool:
        """Become the one computing ``key`` for ``lease_s``, unless another run holds its claim."""
        ...

    def renew(self, claims: Sequence[tuple[str, str]], lease_s: float) -> list[bool]:
        """Renew each ``(key, owner)`` claim for ``lease_s`` from now while ``owner`` holds it; whether each was
        (:mod:`stepper.reuse.leases` renews the claims of computations still running)."""
        ...

    def land(self, key: str, owner: str) -> None:
        """Release ``owner``'s claim without a result (it failed): waiters compute it themselves. A claim another
        run took meanwhile (``owner``'s ran out) stays."""
        ...

    def wait_for(self, key: str, timeout_s: float) -> dict[str, Any] | None:
        """Wait for the computation in flight to store its result; None if it gave up (or its worker died)."""
        ...


class ResultCache:
    """The fleet's :class:`ResultStore` in Redis: TTLs kept by Redis, freshness judged by ``clock``."""

    def __init__(self, client: Redis, settings: CacheSettings, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.settings = settings
        self.clock = clock
        self._probe = lua.script(client, "cache_claim", "cache_probe")
        self._probe_admit = lua.script(client, "cache_claim", "admission", "cache_probe_admit")
        self._land = lua.script(client, "flight_land")
        self._renew = client.register_script(lua.source("flight_renew"))  # redis-py's: it runs in a pipeline
        self._database = result_riders.database(client)

    def probe(
        self,
        key: str,
        owner: str,
        lease_s: float,
        window: CacheWindow | None = None,
        admitting: Admitting | None = None,
    ) -> Probe:
        """The stored result, or the claim of its computation for the run ``owner`` for ``lease_s``. With the
        claim, ``admitting`` is asked in the same script (``lua/cache_probe_admit.lua``) when its keys live in this
        cache's Redis database: one round trip before the provider call instead of two."""
        probe_keys = [key, keys.flight(key)]
        probe_args: list[str | int | float] = [owner, ttl_ms(lease_s)]
        if admitting is None or not result_riders.writes_to(admitting.client, self._database):
            raw, claimed = self._probe(keys=probe_keys, args=probe_args)
        else:
            call = admitting.call
            raw, claimed, *answer = self._probe_admit(keys=probe_keys + call.keys, args=probe_args + call.args)
            if answer:
                admitting.answered(answer[0])
        return Probe(None if raw is None else stored_hit(raw, window, self.clock()), bool(claimed))

    def finish(self, key: str, rides_with: str | None, result: dict[str, Any], ttl_s: float) -> None:
        """Store the result and release the computation's claim, in one round trip. In a worker running task
        ``rides_with``, the write rides with the task's stored result (:mod:`stepper.infra.result_riders`)."""
        rider = Rider(self.client, key, stored_entry(result, self.clock()), ttl_ms(ttl_s), (keys.flight(key),))
        if rides_with is None or not result_riders.defer(rides_with, rider):
            result_riders.write([rider])

    def get(self, key: str, window: CacheWindow | None = None) -> Hit | None:
        """The stored result; without a window (idempotency) it never goes stale."""
        raw = self.client.get(key)
        return None if raw is None else stored_hit(raw, window, self.clock())

    def claim_refresh(self, key: str, ttl_s: float) -> bool:
        """True for exactly one caller per stale period, fleet-wide: that one enqueues the refresh."""
        return bool(self.client.set(keys.refreshing(key), b"1", nx=True, px=ttl_ms(ttl_s)))

    def refreshed(self, key: str) -> None:
        self.client.delete(keys.refreshing(key))

    def claim_flight(self, key: str, owner: str, lease_s: float) -> bool:
        """Become the one computing ``key`` for ``lease_s``, unless another run holds its claim (``SET NX PX``)."""
        return bool(self.client.set(keys.flight(key), owner.encode(), nx=True, px=ttl_ms(lease_s)))

    def renew(self, claims: Sequence[tuple[str, str]], lease_s: float) -> list[bool]:
        """Renew each claim its owner still holds (``lua/flight_renew.lua``), all in one round trip; on a Redis
        Cluster, whose pipelines refuse scripts, one call per claim."""
        calls: list[tuple[list[str], list[str | int]]] = [
            ([keys.flight(key)], [owner, ttl_ms(lease_s)]) for key, owner in claims
        ]
        if isinstance(self.client, RedisCluster):
            return [bool(self._renew(keys=flight, args=args)) for flight, args in calls]
        pipeline = self.client.pipeline(transaction=False)
        for flight, args in calls:
            self._renew(keys=flight, args=args, client=pipeline)
        return [bool(renewed) for renewed in pipeline.execute()]

    def land(self, key: str, owner: str) -> None:
        self._land(keys=[keys.flight(key)], args=[owner])

    def wait_for(self, key: str, timeout_s: float) -> dict[str, Any] | None:
        """Wait for the computation in flight to store its result; None if it gave up (or its worker died)."""
        return poll_for_result(
            lambda: self.get(key), lambda: bool(self.client.exists(keys.flight(key))), timeout_s=timeout_s
        )


def ttl_ms(ttl_s: float) -> int:
    """A TTL or lease as both stores keep it: whole milliseconds, at least one (Redis refuses ``PX 0``)."""
    return max(1, int(ttl_s * 1000))


def stored_entry(result: dict[str, Any], stored_at_s: float) -> str:
    """A result as both stores keep it, JSON, with the time it was stored (for its freshness)."""
    return json.dumps({"result": result, "stored_at": stored_at_s}, separators=(",", ":"))


def stored_hit(raw: bytes | str, window: CacheWindow | None, now_s: float) -> Hit:
    """A stored entry read at ``now_s``: fresh for ``window.fresh_s`` after it was stored, or forever without one."""
    entry = json.loads(raw)
    return Hit(entry["result"], window is None or now_s - entry["stored_at"] < window.fresh_s)


def poll_for_result(
    read: Callable[[], Hit | None], in_flight: Callable[[], bool], *, timeout_s: float
) -> dict[str, Any] | None:
    """Poll ``read`` (backing off from POLL_START_S to POLL_MAX_S) until it finds a result, the computation is no
    longer ``in_flight``, or ``timeout_s`` (real time) has passed; None unless a result was found."""
    deadline = time.monotonic() + timeout_s
    pause = POLL_START_S
    while time.monotonic() < deadline:
        hit = read()
        if hit is not None:
            return hit.result
        if not in_flight():
            hit = read()  # it may have landed between the two reads
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
