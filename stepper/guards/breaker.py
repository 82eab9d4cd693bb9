"""The guard around every provider call: fleet-wide admission (breaker and rate limits), then pybreaker.

pybreaker holds its lock for the whole call, so one shared breaker object would let a threads pool make one
call at a time. Each call therefore takes a ``CircuitBreaker`` of its own over the same shared storage from the
provider's idle ones, and puts it back: the state that matters lives in the backend (Redis for a fleet), and a
process builds as many breakers per provider as it ever makes calls to it at once. Not one per thread: under
gevent every task is a greenlet of its own, and a breaker per greenlet would be built for every call. A new
breaker's storage is primed with the admission before pybreaker reads its state, and only a process's first
breaker of a provider writes pybreaker's keys (stepper.guards.admission.PrimedRedisStorage): the others cost
no round trip.
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
from stepper.guards.admission import Admission, GuardBackend, Limits, PrimedStorage, RedisGuardBackend
from stepper.infra import metrics
from stepper.infra.lua import PendingReply, ScriptCall
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


class AdmissionAhead:
    """The admission of a call to ``provider``, asked ahead of it by another script in that script's round trip
    (the cache probe asks it when it misses and claims the computation, stepper.reuse.cache). :attr:`call` is
    what the script runs, worked out when first read; :meth:`answered` keeps the answer, which
    :meth:`ProviderGuard.call` then uses instead of asking again. Made by :meth:`ProviderGuard.ahead`."""

    def __init__(self, guard: ProviderGuard, backend: RedisGuardBackend, provider: str, limits: Limits, tokens: int):
        self.provider, self.limits, self.tokens = provider, limits, tokens
        self._guard, self._backend = guard, backend
        #: Where the admission's keys live (the guards' Redis).
        self.client = backend.client
        self._call: ScriptCall | None = None
        #: The settlements the call carries (GuardBackend.admit), taken from the guard when it was worked out.
        self.settling = (0, 0)
        self.admission: Admission | None = None
        self.taken = False
        #: The reply of an admission sent by :meth:`ask_now`, until it is read.
        self._sent: PendingReply | None = None

    @property
    def call(self) -> ScriptCall:
        """admission.lua's ``admit`` for this call, with what the guard owes the provider's buckets."""
        if self._call is None:
            overspent, unused = self.settling = self._guard.settlements(self.provider)
            self._call = self._backend.asked_along(
                self.provider, self.limits, self.tokens, self._guard.reset_timeout_s, overspent=overspent, unused=unused
            )
        return self._call

    def answered(self, reply: Any) -> None:
        self.admission = self._backend.answer(reply)

    def ask_now(self) -> None:
        """Send the admission at once in a round trip of its own, for a task whose first call no cache probe
        comes before: Redis answers while the task gets ready to call, and :meth:`take` reads the answer. A Redis
        error (no connection left in the pool, say) leaves it to the call, as :meth:`read` does."""
        try:
            self._sent = self._backend.send_admit(self.call)
        except RedisError as exc:
            log.debug("the admission of %s could not be sent ahead (%s)", self.provider, exc)

    def take(self, provider: str) -> Admission | None:
        """The answer, once, for the call to ``provider`` it was asked for; None for any other call."""
        self.read()
        if self.taken or self.admission is None or provider != self.provider:
            return None
        self.taken = True
        return self.admission

    def read(self) -> None:
        """Read the reply :meth:`ask_now` sent for, once. A Redis error leaves the admission unanswered: the guard
        asks again itself, and says what went wrong (or lets the call through while Redis is unreachable)."""
        sent, self._sent = self._sent, None
        if sent is None:
            return
        try:
            self.answered(sent.get())
        except RedisError as exc:
            log.debug("the admission sent ahead for %s got no answer (%s)", self.provider, exc)


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
        # Tokens used beyond the estimates, and requests admitted ahead for calls never made, per provider, settled
        # in the next admission's script (one round trip fewer per call); a process that never calls that provider
        # again leaves the buckets to refill.
        self._overspent: dict[str, int] = {}
        self._unused: dict[str, int] = {}
        self._owed_lock = threading.Lock()
        self._failing_open = threading.Event()

    def call(
        self,
        provider: str,
        limits: Limits,
        tokens: int,
        fn: Callable[[], ReplyT],
        ahead: AdmissionAhead | None = None,
    ) -> ReplyT:
        """Run ``fn`` if the breaker and the rate limits let it; raise CircuitOpen or RateLimited if not. The first
        answer is ``ahead``'s when it was asked for this call (:meth:`ahead`)."""
        admission = self._admit(provider, limits, tokens, None if ahead is None else ahead.take(provider))
        if admission is None:
            return fn()
        breaker = self._take_breaker(provider, admission)
        storage = cast(PrimedStorage, breaker._state_storage)
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
            self._owe(provider, used - reserved, 0)

    def _owe(self, provider: str, overspent: int, unused: int) -> None:
        """Settle ``overspent`` tokens and ``unused`` requests with the next admission of ``provider``."""
        with self._owed_lock:
            for owed, amount in ((self._overspent, overspent), (self._unused, unused)):
                if amount:
                    owed[provider] = owed.get(provider, 0) + amount

    @property
    def reset_timeout_s(self) -> float:
        return self._settings.reset_timeout_s

    def ahead(self, provider: str, limits: Limits, tokens: int) -> AdmissionAhead | None:
        """The admission of a call to ``provider`` for another script to ask in its round trip, or None when the
        backend has no scripts (memory). Pass it to :meth:`call`, and end it with :meth:`release` whatever
        happened: a call it admitted that was never made gives its request and tokens back."""
        if not isinstance(self._backend, RedisGuardBackend):
            return None
        return AdmissionAhead(self, self._backend, provider, limits, tokens)

    def release(self, ahead: AdmissionAhead) -> None:
        """End ``ahead``. Not answered (the cache had the result, or lives in another Redis): the settlements it
        carried are owed again. Admitted but not used by a call: its request and tokens are given back with the
        next admission. A half-open probe it won is not given back: the next one comes after the reset timeout."""
        ahead.read()  # a reply still due is read: its connection goes back, and an admission unused is given back
        admission = ahead.admission
        if admission is None:
            self._owe(ahead.provider, *ahead.settling)
        elif not ahead.taken and admission.verdict in ("closed", "probe") and admission.wait_s <= 0:
            limits = ahead.limits
            self._owe(ahead.provider, -ahead.tokens if limits.tpm else 0, 1 if limits.rpm else 0)

    def settlements(self, provider: str) -> tuple[int, int]:
        """What is owed to ``provider``'s buckets (overspent tokens, unused requests), now left to the caller."""
        with self._owed_lock:
            return self._overspent.pop(provider, 0), self._unused.pop(provider, 0)

    def _admit(self, provider: str, limits: Limits, tokens: int, first: Admission | None) -> Admission | None:
        """Ask the backend (unless ``first`` is its answer already), waiting out short rate-limit waits. None: the
        backend is down, call unguarded."""
        deadline = time.monotonic() + self._max_wait_s
        while True:
            admission, first = first or self._ask(provider, limits, tokens), None
            if admission is None:
                return None
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

    def _ask(self, provider: str, limits: Limits, tokens: int) -> Admission | None:
        """One answer of the backend, settling what is owed; None when its Redis is unreachable (fail open)."""
        overspent, unused = self.settlements(provider)
        try:
            admission = self._backend.admit(
                provider, limits, tokens, self._settings.reset_timeout_s, overspent=overspent, unused=unused
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
        return admission

    def _cool_down(self, provider: str, seconds: float) -> None:
        try:
            self._backend.cool_down(provider, seconds)
        except RedisError as exc:
            log.warning("could not record %s's cooldown of %.1fs (%s)", provider, seconds, exc)

    def _take_breaker(self, provider: str, admission: Admission) -> pybreaker.CircuitBreaker:
        """One of ``provider``'s idle breakers, or a new one when every one is in a call (see the module), its
        storage primed with ``admission`` (a new one's before pybreaker reads the state from it)."""
        with self._idle_lock:
            idle = self._idle.setdefault(provider, [])
            breaker = idle.pop() if idle else None
        if breaker is not None:
            cast(PrimedStorage, breaker._state_storage).prime(admission)
            return breaker
        storage = self._backend.breaker_storage(provider)
        cast(PrimedStorage, storage).prime(admission)
        return pybreaker.CircuitBreaker(
            fail_max=self._settings.fail_max,
            reset_timeout=self._settings.reset_timeout_s,
            exclude=[is_not_provider_failure],
            listeners=list(self._listeners),
            state_storage=storage,
            name=provider,
            throw_new_error_on_trip=False,
        )
