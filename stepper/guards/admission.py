"""Admission: may this process call this provider now? One answer for the breaker and the rate limits.

Before every provider call the guard asks the backend, in one step, whether the provider's circuit lets the
call through (and, when the reset timeout has passed, whether this caller holds the single fleet-wide probe
lease) and whether the provider's requests-per-minute and tokens-per-minute buckets have room. On Redis this
is one Lua script, one round trip; in memory it is the same logic under a lock. The backend also makes the
storage that pybreaker's state machine writes to, so the breaker's state lives where admission reads it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

import pybreaker
from redis import Redis
from redis.exceptions import RedisError

Verdict = Literal["closed", "probe", "reject"]

#: What a primed storage shows pybreaker as the opening time once admission granted the probe.
_LONG_AGO = datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Admission:
    """The backend's answer.

    ``verdict``: ``closed`` (call normally), ``probe`` (the circuit is open or half-open, and this caller may
    make the one trial call), or ``reject`` (the circuit is open). ``wait_s`` > 0 means a rate limit has no
    room yet: nothing was taken and the caller should come back after that long.
    """

    verdict: Verdict
    state: str
    fail_counter: int
    wait_s: float = 0.0


@dataclass(frozen=True)
class Limits:
    rpm: int = 0
    tpm: int = 0


class GuardBackend(Protocol):
    def admit(
        self, provider: str, limits: Limits, tokens: int, reset_timeout_s: float, overspent: int = 0
    ) -> Admission:
        """``overspent``: tokens earlier calls used beyond their estimate, settled first (saves a round trip)."""

    def settle_tokens(self, provider: str, limits: Limits, overspent: int) -> None:
        """Charge (or refund, when negative) the difference between estimated and real token use."""

    def breaker_storage(self, provider: str) -> pybreaker.CircuitBreakerStorage:
        """Storage for one pybreaker object of the calling thread, over the provider's shared state."""


def _keys(provider: str) -> tuple[str, str, str, str]:
    """Namespaces in Redis; the hash tag keeps one provider's keys on one Redis Cluster slot."""
    base = f"stepper:{{{provider}}}"
    return f"{base}:breaker", f"{base}:probe", f"{base}:rpm", f"{base}:tpm"


def breaker_namespace(provider: str) -> str:
    """pybreaker's own key layout lives under this prefix (``<prefix>:pybreaker:state`` and so on)."""
    return _keys(provider)[0]


_ADMIT = """
local reset_ms = tonumber(ARGV[1])
local overspent = tonumber(ARGV[5])
if overspent ~= 0 and tonumber(ARGV[3]) > 0 and redis.call('EXISTS', KEYS[6]) == 1 then
  redis.call('HINCRBYFLOAT', KEYS[6], 'tokens', -overspent)
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('GET', KEYS[1]) or 'closed'
local fails = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local verdict = 'closed'
if state ~= 'closed' then
  local opened_s = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
  if state == 'open' and now_ms < opened_s * 1000 + reset_ms then
    return {state, fails, 'reject', 0}
  end
  if not redis.call('SET', KEYS[4], '1', 'NX', 'PX', reset_ms) then
    return {state, fails, 'reject', 0}
  end
  verdict = 'probe'
end
local function take(key, per_minute, cost)
  if per_minute <= 0 then return 0, nil end
  local rate = per_minute / 60000.0
  local data = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(data[1]) or per_minute
  local ts = tonumber(data[2]) or now_ms
  tokens = math.min(per_minute, tokens + math.max(0, now_ms - ts) * rate)
  cost = math.min(cost, per_minute)
  if tokens >= cost then return 0, tokens - cost end
  return math.ceil((cost - tokens) / rate), nil
end
local rpm_wait, rpm_left = take(KEYS[5], tonumber(ARGV[2]), 1)
local tpm_wait, tpm_left = take(KEYS[6], tonumber(ARGV[3]), tonumber(ARGV[4]))
local wait = math.max(rpm_wait, tpm_wait)
if wait > 0 then
  if verdict == 'probe' then redis.call('DEL', KEYS[4]) end
  return {state, fails, verdict, wait}
end
local now = string.format('%d', now_ms)
if rpm_left then
  redis.call('HSET', KEYS[5], 'tokens', tostring(rpm_left), 'ts', now)
  redis.call('PEXPIRE', KEYS[5], 120000)
end
if tpm_left then
  redis.call('HSET', KEYS[6], 'tokens', tostring(tpm_left), 'ts', now)
  redis.call('PEXPIRE', KEYS[6], 120000)
end
return {state, fails, verdict, 0}
"""


class RedisGuardBackend:
    """Fleet-wide state in Redis: every process and host sees the same breakers and buckets."""

    def __init__(self, client: Redis) -> None:
        # pybreaker's Redis storage decodes bytes itself and breaks on a decoding client.
        if client.get_encoder().decode_responses:
            raise ValueError("the guard's Redis client must be made with decode_responses=False")
        self._client = client
        self._admit = client.register_script(_ADMIT)

    def admit(
        self, provider: str, limits: Limits, tokens: int, reset_timeout_s: float, overspent: int = 0
    ) -> Admission:
        breaker, probe, rpm, tpm = _keys(provider)
        keys = [f"{breaker}:pybreaker:state", f"{breaker}:pybreaker:fail_counter", f"{breaker}:pybreaker:opened_at"]
        state, fails, verdict, wait_ms = self._admit(
            keys=[*keys, probe, rpm, tpm],
            args=[int(reset_timeout_s * 1000), limits.rpm, limits.tpm, tokens, overspent],
        )
        return Admission(verdict.decode(), state.decode(), int(fails), int(wait_ms) / 1000)

    def settle_tokens(self, provider: str, limits: Limits, overspent: int) -> None:
        if limits.tpm and overspent:
            self._client.hincrbyfloat(_keys(provider)[3], "tokens", -overspent)

    def breaker_storage(self, provider: str) -> pybreaker.CircuitBreakerStorage:
        return PrimedRedisStorage(self._client, breaker_namespace(provider))


class PrimedRedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage, told what admission already read, so a successful call writes nothing.

    pybreaker on its own reads the state before and resets the failure counter after every call: two more
    round trips on the happy path. ``prime`` hands it the values admission just read; writes still go to
    Redis, and the failure counter comes back from INCR instead of a second GET.
    """

    def __init__(self, client: Redis, namespace: str) -> None:
        super().__init__(pybreaker.STATE_CLOSED, client, namespace=namespace)
        self._primed: dict[str, str | int] = {}

    def prime(self, admission: Admission) -> None:
        self._primed = {"state": admission.state, "counter": admission.fail_counter}

    def unprime(self) -> None:
        self._primed = {}

    @property
    def state(self) -> str:
        return str(self._primed["state"]) if "state" in self._primed else str(super().state)

    @state.setter
    def state(self, state: str) -> None:
        pybreaker.CircuitRedisStorage.state.fset(self, state)  # type: ignore[attr-defined]  # the parent's setter
        if self._primed:
            self._primed["state"] = state

    @property
    def counter(self) -> int:
        return int(self._primed["counter"]) if "counter" in self._primed else int(super().counter)

    def increment_counter(self) -> None:
        try:
            count = int(self._redis.incr(self._namespace("fail_counter")))
        except RedisError:
            # Like pybreaker's own storage: losing one count must not replace the provider's error.
            self.logger.exception("RedisError while counting a failure")
            return
        if self._primed:
            self._primed["counter"] = count

    def reset_counter(self) -> None:
        if self._primed.get("counter") == 0:
            return
        super().reset_counter()
        if self._primed:
            self._primed["counter"] = 0

    @property
    def opened_at(self) -> datetime | None:
        # Admission has already decided that the reset timeout passed (on Redis's clock, not ours):
        # show pybreaker an opening long ago so that it makes the trial call.
        if self._primed:
            return _LONG_AGO
        opened: datetime | None = super().opened_at
        return opened

    @opened_at.setter
    def opened_at(self, now: datetime) -> None:
        pybreaker.CircuitRedisStorage.opened_at.fset(self, now)  # type: ignore[attr-defined]  # the parent's setter


class MemoryGuardBackend:
    """The same admission in one process's memory: for tests and a single-process development worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._storages: dict[str, pybreaker.CircuitMemoryStorage] = {}
        self._probe_until: dict[str, float] = {}
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def admit(
        self, provider: str, limits: Limits, tokens: int, reset_timeout_s: float, overspent: int = 0
    ) -> Admission:
        if overspent:
            self.settle_tokens(provider, limits, overspent)
        storage = self.breaker_storage(provider)
        with self._lock:
            now = time.time()
            state, fails = storage.state, storage.counter
            verdict: Verdict = "closed"
            if state != pybreaker.STATE_CLOSED:
                opened = storage.opened_at.timestamp() if storage.opened_at else 0.0
                if state == pybreaker.STATE_OPEN and now < opened + reset_timeout_s:
                    return Admission("reject", state, fails)
                if now < self._probe_until.get(provider, 0.0):
                    return Admission("reject", state, fails)
                self._probe_until[provider] = now + reset_timeout_s
                verdict = "probe"
            rpm_wait, rpm_left = self._take(provider, "rpm", limits.rpm, 1, now)
            tpm_wait, tpm_left = self._take(provider, "tpm", limits.tpm, tokens, now)
            wait = max(rpm_wait, tpm_wait)
            if wait > 0:
                if verdict == "probe":
                    self._probe_until.pop(provider, None)
                return Admission(verdict, state, fails, wait)
            for name, left in (("rpm", rpm_left), ("tpm", tpm_left)):
                if left is not None:
                    self._buckets[(provider, name)] = (left, now)
            return Admission(verdict, state, fails)

    def settle_tokens(self, provider: str, limits: Limits, overspent: int) -> None:
        with self._lock:
            if limits.tpm and (provider, "tpm") in self._buckets:
                tokens, stamp = self._buckets[(provider, "tpm")]
                self._buckets[(provider, "tpm")] = (tokens - overspent, stamp)

    def breaker_storage(self, provider: str) -> pybreaker.CircuitBreakerStorage:
        with self._lock:
            return self._storages.setdefault(provider, PrimedMemoryStorage(pybreaker.STATE_CLOSED))

    def _take(self, provider: str, name: str, per_minute: int, cost: int, now: float) -> tuple[float, float | None]:
        if per_minute <= 0:
            return 0.0, None
        rate = per_minute / 60.0
        tokens, stamp = self._buckets.get((provider, name), (float(per_minute), now))
        tokens = min(per_minute, tokens + max(0.0, now - stamp) * rate)
        cost = min(cost, per_minute)
        if tokens >= cost:
            return 0.0, tokens - cost
        return (cost - tokens) / rate, None


class PrimedMemoryStorage(pybreaker.CircuitMemoryStorage):
    """In memory the state is already at hand; priming is a no-op kept for the same interface."""

    def prime(self, admission: Admission) -> None:
        del admission

    def unprime(self) -> None:
        pass


class PrimedStorage(Protocol):
    def prime(self, admission: Admission) -> None: ...

    def unprime(self) -> None: ...
