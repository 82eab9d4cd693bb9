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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import pybreaker
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stepper.errors import ConfigError
from stepper.infra import keys, lua
from stepper.infra.lua import PendingReply, ScriptCall

Verdict = Literal["closed", "probe", "reject", "cooldown"]

#: What a primed storage shows pybreaker as the opening time once admission granted the probe.
_LONG_AGO = datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Admission:
    """The backend's answer.

    ``verdict``: ``closed`` (call normally), ``probe`` (the circuit is open or half-open, and this caller may
    make the one trial call), ``reject`` (the circuit is open), or ``cooldown`` (the provider asked the fleet
    to wait, with Retry-After, for ``wait_s`` more). Otherwise ``wait_s`` > 0 means a rate limit has no room
    yet: nothing was taken and the caller should come back after that long.
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
        self, provider: str, limits: Limits, tokens: int, reset_timeout_s: float, *, overspent: int = 0, unused: int = 0
    ) -> Admission:
        """``overspent``: tokens earlier calls used beyond their estimate; ``unused``: requests earlier admissions
        took for calls never made. Both are settled first (saves a round trip)."""

    def breaker_storage(self, provider: str) -> pybreaker.CircuitBreakerStorage:
        """Storage for one pybreaker object (used by one call at a time), over the provider's shared state."""

    def cool_down(self, provider: str, seconds: float) -> None:
        """Keep every caller away from ``provider`` for ``seconds`` (its Retry-After); a longer cooldown already
        running is kept."""


class RedisGuardBackend:
    """Fleet-wide state in Redis: every process and host sees the same breakers and buckets."""

    def __init__(self, client: Redis) -> None:
        # pybreaker's Redis storage decodes bytes itself and breaks on a decoding client.
        if client.get_encoder().decode_responses:
            raise ValueError("the guard's Redis client must be made with decode_responses=False")
        self.client = client
        self._admit = lua.script(client, "admission", "admit")
        self._cool_down = lua.script(client, "cool_down")
        #: The providers whose breaker keys this process has written (see PrimedRedisStorage).
        self._keys_written: set[str] = set()
        self._lock = threading.Lock()

    def admit(
        self, provider: str, limits: Limits, tokens: int, reset_timeout_s: float, *, overspent: int = 0, unused: int = 0
    ) -> Admission:
        call = self.asked_along(provider, limits, tokens, reset_timeout_s, overspent=overspent, unused=unused)
        return self.answer(self._admit(keys=call.keys, args=call.args))

    def asked_along(
        self, provider: str, limits: Limits, tokens: int, reset_timeout_s: float, *, overspent: int, unused: int
    ) -> ScriptCall:
        """The same admission as the keys and arguments of admission.lua's ``admit``, for another script to ask in
        its own round trip; read what it answers with :meth:`answer`."""
        breaker, probe = keys.breaker(provider), keys.probe(provider)
        rpm, tpm = keys.rate_bucket(provider, "rpm"), keys.rate_bucket(provider, "tpm")
        pybreaker_keys = [f"{breaker}:pybreaker:{name}" for name in ("state", "fail_counter", "opened_at")]
        return ScriptCall(
            [*pybreaker_keys, probe, rpm, tpm, keys.cooldown(provider)],
            [int(reset_timeout_s * 1000), limits.rpm, limits.tpm, tokens, overspent, unused],
        )

    def send_admit(self, call: ScriptCall) -> PendingReply:
        """Send an admission worked out by :meth:`asked_along` now, in a round trip of its own, and return its
        reply to read when the call needs it (``PendingReply.get``, then :meth:`answer`)."""
        return self._admit.send(keys=call.keys, args=call.args)

    def answer(self, reply: Any) -> Admission:
        """What ``admit`` answered, as an :class:`Admission`."""
        state, fails, verdict, wait_ms = reply
        return Admission(verdict.decode(), state.decode(), int(fails), int(wait_ms) / 1000)

    def cool_down(self, provider: str, seconds: float) -> None:
        self._cool_down(keys=[keys.cooldown(provider)], args=[max(1, int(seconds * 1000))])

    def check(self) -> None:
        """Run the guard's scripts once, at worker start-up, so that a Redis the guards cannot use (scripting
        refused to stepper's user, a server too old) stops the worker with the reason, instead of failing, or
        being skipped, at every call. Raises ConfigError; Redis unreachable is left to the calls (they fail
        open)."""
        probe = "stepper-start-up-check"
        try:
            self.admit(probe, Limits(), 0, reset_timeout_s=1.0)
            self.cool_down(probe, 0.001)
        except (RedisConnectionError, RedisTimeoutError):
            return
        except RedisError as exc:
            raise ConfigError(
                f"the guards cannot use the Redis at {self.client.connection_pool.connection_kwargs.get('host')} "
                f"({type(exc).__name__}: {exc}); stepper's Redis user must be allowed to run scripts (EVAL, "
                "EVALSHA, SCRIPT) on its keys, on Redis 6.2 or newer"
            ) from None

    def breaker_storage(self, provider: str) -> pybreaker.CircuitBreakerStorage:
        with self._lock:
            first = provider not in self._keys_written
            self._keys_written.add(provider)
        return PrimedRedisStorage(self.client, keys.breaker(provider), write_keys=first)


class PrimedRedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage, told what admission already read, so a successful call writes nothing.

    pybreaker on its own reads the state before and resets the failure counter after every call: two more
    round trips on the happy path. ``prime`` hands it the values admission just read; writes still go to
    Redis, and the failure counter comes back from INCR instead of a second GET.

    pybreaker's storage writes its three keys (``SETNX`` of the state and both counters) as it is made, three
    round trips, and a worker makes one storage per call it runs at once to a provider: 32 or 1,000 of them in
    its first tasks, before their calls. ``write_keys=False`` makes one without writing them, for a process
    that wrote them already (admission.lua reads a missing state as closed and a missing counter as 0 anyway;
    the keys are written so that ``stepper status`` lists every provider called, closed or not).
    """

    def __init__(self, client: Redis, namespace: str, *, write_keys: bool = True) -> None:
        self._primed: dict[str, str | int] = {}
        self._write_keys = write_keys
        super().__init__(pybreaker.STATE_CLOSED, client, namespace=namespace)
        self._write_keys = True

    def _initialize_redis_state(self, state: str) -> None:
        """pybreaker's ``SETNX`` of the three keys, unless the storage is being made with ``write_keys=False``
        (pybreaker also calls it when its ``state`` finds the key missing)."""
        if self._write_keys:
            super()._initialize_redis_state(state)

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

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._storages: dict[str, pybreaker.CircuitMemoryStorage] = {}
        self._probe_until: dict[str, float] = {}
        self._cooldown_until: dict[str, float] = {}
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def admit(
        self, provider: str, limits: Limits, tokens: int, reset_timeout_s: float, *, overspent: int = 0, unused: int = 0
    ) -> Admission:
        self._settle(provider, limits, overspent, unused)
        storage = self.breaker_storage(provider)
        with self._lock:
            now = self._clock()
            state, fails = storage.state, storage.counter
            if (cooldown_s := self._cooldown_until.get(provider, 0.0) - now) > 0:
                return Admission("cooldown", state, fails, cooldown_s)
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

    def cool_down(self, provider: str, seconds: float) -> None:
        with self._lock:
            until = self._clock() + seconds
            self._cooldown_until[provider] = max(until, self._cooldown_until.get(provider, 0.0))

    def _settle(self, provider: str, limits: Limits, overspent: int, unused: int) -> None:
        """Take ``overspent`` tokens from the tpm bucket and give ``unused`` requests back to the rpm bucket."""
        with self._lock:
            for name, per_minute, change in (("tpm", limits.tpm, -overspent), ("rpm", limits.rpm, unused)):
                if change and per_minute and (provider, name) in self._buckets:
                    tokens, stamp = self._buckets[(provider, name)]
                    self._buckets[(provider, name)] = (tokens + change, stamp)

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
