"""The guard around every provider call: fleet-wide admission (breaker and rate limits), then pybreaker.

pybreaker holds its lock for the whole call, so one shared breaker object would let a threads pool make one
call at a time. Each call therefore takes a ``CircuitBreaker`` of its own over the same shared storage from the
provider's idle ones, and puts it back: the state that matters lives in the backend (Redis for a fleet), and a
process builds as many breakers per provider as it ever makes calls to it at once. Not one per thread: under
gevent every task is a greenlet of its own, and pybreaker's Redis storage writes its three keys (``SETNX``)
whenever one is built, so a breaker per thread cost three round trips on every call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import pybreaker
from pydantic import BaseModel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stepper.contracts import Reply
from stepper.errors import Cancelled, CircuitOpen, ConfigError, ProviderError, RateLimited, StepperError
from stepper.guards.admission import Admission, GuardBackend, Limits, PrimedStorage
from stepper.infra import metrics
from stepper.settings import BreakerSettings

log = logging.getLogger(__name__)

ReplyT = TypeVar("ReplyT", bound=Reply[BaseModel])


def is_not_provider_failure(exc: BaseException) -> bool:
    """Errors that say nothing about the provider's health must not open its breaker."""
    if isinstance(exc, ProviderError):
        return not exc.trips_breaker
    return isinstance(exc, StepperError)


class _ReportTransitions(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old: Any, new: Any) -> None:
        if old is not None and old.name != new.name:
            log.warning("circuit breaker %s: %s -> %s", cb.name, old.name, new.name)
            metrics.BREAKER_TRANSITIONS.labels(cb.name, new.name).inc()


class ProviderGuard:
    """Admits, breaks and meters calls to providers; one instance per worker process."""

    def __init__(
        self,
        backend: GuardBackend,
        breaker: BreakerSettings,
        max_wait_s: float,
        *,
        max_cooldown_s: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        listeners: tuple[pybreaker.CircuitBreakerListener, ...] = (),
    ) -> None:
        self._backend = backend
        self._settings = breaker
        self._max_wait_s = max_wait_s
        self._max_cooldown_s = max_cooldown_s
        self._sleep = sleep
        self._listeners = (_ReportTransitions(), *listeners)
        self._idle: dict[str, list[pybreaker.CircuitBreaker]] = {}
        self._idle_lock = threading.Lock()
        # Tokens used beyond the estimates, per provider, settled in the next admission's script (one round
        # trip fewer per call); a process that never calls that provider again leaves the bucket to refill.
        self._overspent: dict[str, int] = {}
        self._failing_open = threading.Event()
        self._overspent_lock = threading.Lock()

    def call(self, provider: str, limits: Limits, tokens: int, fn: Callable[[], ReplyT]) -> ReplyT:
        """Run ``fn`` if the breaker and the rate limits let it; raise CircuitOpen or RateLimited if not."""
        admission = self._admit(provider, limits, tokens)
        if admission is None:
            return fn()
        breaker = self._take_breaker(provider)
        storage = cast(PrimedStorage, breaker._state_storage)
        storage.prime(admission)
        try:
            reply = breaker.call(fn)
        except pybreaker.CircuitBreakerError:
            raise CircuitOpen(f"the circuit breaker of {provider} is open") from None
        except RateLimited as exc:
            if exc.retry_after_s:  # the vendor said how long: nobody in the fleet calls it before then
                self._cool_down(provider, min(exc.retry_after_s, self._max_cooldown_s))
            raise
        except Cancelled as exc:  # a call cut short used part of what it reserved
            self._settle(provider, limits, tokens, exc.partial_usage)
            raise
        finally:
            storage.unprime()
            with self._idle_lock:
                self._idle[provider].append(breaker)
        self._settle(provider, limits, tokens, reply.usage)
        return reply

    def _settle(self, provider: str, limits: Limits, reserved: int, usage: Mapping[str, int]) -> None:
        """Charge (or refund) the difference between the tokens reserved and those the vendor says it used;
        settled in the next admission's script."""
        used = usage.get("input_tokens", 0) + usage.get("output_tokens", 0)
        if limits.tpm and used:
            with self._overspent_lock:
                self._overspent[provider] = self._overspent.get(provider, 0) + used - reserved

    def _admit(self, provider: str, limits: Limits, tokens: int) -> Admission | None:
        """Ask the backend, waiting out short rate-limit waits. None: the backend is down, call unguarded."""
        deadline = time.monotonic() + self._max_wait_s
        while True:
            with self._overspent_lock:
                overspent = self._overspent.pop(provider, 0)
            try:
                admission = self._backend.admit(
                    provider, limits, tokens, self._settings.reset_timeout_s, overspent=overspent
                )
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # The guards protect vendors; a Redis outage must not stop work that is already running. This is
                # the one failure that lets calls through unguarded: counted, and logged once per outage.
                metrics.GUARD_FAIL_OPEN.labels(provider).inc()
                if not self._failing_open.is_set():
                    self._failing_open.set()
                    log.warning("guard state unreachable (%s); calling providers without breaker or rate limit", exc)
                return None
            except RedisError as exc:
                raise ConfigError(
                    f"the guards' Redis refused admission for {provider} ({type(exc).__name__}: {exc}); nothing "
                    "was called unguarded. Check that stepper's Redis user may run scripts (EVAL, EVALSHA) and "
                    "that the server is Redis 6.2 or newer"
                ) from None
            if self._failing_open.is_set():
                self._failing_open.clear()
                log.info("guard state reachable again: breakers and rate limits apply")
            if admission.verdict == "cooldown":
                raise RateLimited(
                    f"{provider} asked the fleet to wait (Retry-After); calls resume in {admission.wait_s:.2f}s",
                    admission.wait_s,
                )
            if admission.verdict == "reject":
                raise CircuitOpen(
                    f"the circuit breaker of {provider} is open after {self._settings.fail_max} failures; "
                    f"one probe call goes through every {self._settings.reset_timeout_s:g}s"
                )
            if admission.wait_s <= 0:
                return admission
            if time.monotonic() + admission.wait_s > deadline:
                raise RateLimited(
                    f"{provider} is at its fleet-wide limit ({limits.rpm or '-'} requests/min, "
                    f"{limits.tpm or '-'} tokens/min); room again in {admission.wait_s:.2f}s",
                    admission.wait_s,
                )
            metrics.RATE_LIMIT_WAITS.labels(provider).inc()
            metrics.RATE_LIMIT_WAIT_SECONDS.labels(provider).inc(admission.wait_s)
            self._sleep(admission.wait_s)

    def _cool_down(self, provider: str, seconds: float) -> None:
        try:
            self._backend.cool_down(provider, seconds)
        except RedisError as exc:
            log.warning("could not record %s's cooldown of %.1fs (%s)", provider, seconds, exc)

    def _take_breaker(self, provider: str) -> pybreaker.CircuitBreaker:
        """One of ``provider``'s idle breakers, or a new one when every one is in a call (see the module)."""
        with self._idle_lock:
            idle = self._idle.setdefault(provider, [])
            if idle:
                return idle.pop()
        return pybreaker.CircuitBreaker(
            fail_max=self._settings.fail_max,
            reset_timeout=self._settings.reset_timeout_s,
            exclude=[is_not_provider_failure],
            listeners=list(self._listeners),
            state_storage=self._backend.breaker_storage(provider),
            name=provider,
            throw_new_error_on_trip=False,
        )
