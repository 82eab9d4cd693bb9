"""The chain executor: try a kind's providers in order until one answers.

Around each provider call, from the outside in (written down once, here):

    retry loop (per provider: backoff with full jitter, Retry-After honoured, capped inline wait)
      -> admission (fleet-wide breaker state and rate limits, one Redis round trip)
        -> pybreaker (counts transient failures, opens and closes the circuit)
          -> provider adapter, then validation of its output against the family's model

A transient failure moves on to the next provider once the provider's inline tries are spent; an error
caused by the request itself stops the chain; a provider that cannot run here is recorded as ``skipped``.
When every provider failed, ``ChainExhausted`` carries every attempt and says whether a later try could
succeed (the task then goes back to the broker).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel, ValidationError

from stepper.contracts import Provider, Reply
from stepper.errors import (
    AuthError,
    ChainExhausted,
    CircuitOpen,
    InvalidRequest,
    PermanentError,
    RateLimited,
    RetryableError,
    TruncatedOutput,
)
from stepper.families import Family
from stepper.guards.admission import Limits
from stepper.guards.backoff import wait_before_retry
from stepper.guards.breaker import ProviderGuard
from stepper.infra import metrics, tracing
from stepper.infra.logs import log_context
from stepper.registry import Registry, unavailable_reason
from stepper.schemas import Attempt, Kind, Outcome, TaskResult, describe_validation_error
from stepper.settings import ChainEntry, ProviderSettings, StepperSettings

log = logging.getLogger(__name__)

MOCK = "mock"
MOCK_SETTINGS = ProviderSettings.model_validate({"name": MOCK, "class": "stepper.providers.mock:MockProvider"})
RETRYABLE_OUTCOMES: frozenset[Outcome] = frozenset({"retryable_error", "rate_limited", "circuit_open"})


@dataclass(frozen=True)
class Link:
    """One resolved step of a chain: a provider and model, or the reason it is skipped here."""

    name: str
    model: str
    settings: ProviderSettings
    skip_reason: str | None = None


class ChainExecutor:
    """Resolves and runs chains for one worker process; provider instances are made once and reused."""

    def __init__(
        self,
        settings: StepperSettings,
        registry: Registry,
        guard: ProviderGuard,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._guard = guard
        self._sleep = sleep
        self._instances: dict[tuple[Kind, str], Provider] = {}

    def resolve_chain(self, kind: Kind, requested_model: str | None = None) -> list[Link]:
        """The links to try for ``kind`` in this mode, optionally only those serving ``requested_model``."""
        entries = self._entries_for(kind, requested_model)
        mode = self._settings.mode
        if mode == "mock":
            return [Link(MOCK, entry.model, self._mock_settings()) for entry in entries]
        links = [self._link(kind, entry) for entry in entries]
        if mode == "hybrid" and links[-1].name != MOCK:
            links.append(Link(MOCK, entries[0].model, self._mock_settings()))
        return links

    def run(self, family: Family, request: BaseModel) -> TaskResult:
        started = time.monotonic()
        attempts: list[Attempt] = []
        retry_after_hints: list[float] = []
        for link in self.resolve_chain(family.kind, getattr(request, "model", None)):
            if link.skip_reason is not None:
                attempts.append(
                    Attempt(provider=link.name, model=link.model, outcome="skipped", error=link.skip_reason, ms=0)
                )
                continue
            context = log_context.set({**log_context.get(), "provider": link.name})
            try:
                with tracing.span("stepper.provider", {"stepper.provider": link.name, "stepper.model": link.model}):
                    reply = self._try_provider(family, request, link, attempts, retry_after_hints)
            finally:
                log_context.reset(context)
            if reply is not None:
                metrics.record_reply(family.kind, link.name, attempts[0].provider if attempts else None, reply.usage)
                return TaskResult(
                    kind=family.kind,
                    output=reply.output.model_dump(mode="json"),
                    provider=link.name,
                    model=link.model,
                    attempts=attempts,
                    elapsed_ms=round((time.monotonic() - started) * 1000, 3),
                    usage=reply.usage,
                )
        raise self._exhausted(family.kind, attempts, retry_after_hints)

    def _try_provider(
        self, family: Family, request: BaseModel, link: Link, attempts: list[Attempt], retry_after_hints: list[float]
    ) -> Reply[BaseModel] | None:
        """Up to ``attempts_per_provider`` tries; the reply, or None to move on to the next provider."""
        retry = self._settings.retry
        limits = Limits(rpm=link.settings.rpm, tpm=link.settings.tpm)
        tokens = family.estimate_tokens(request) if link.settings.tpm else 0
        for try_number in range(retry.attempts_per_provider):
            started = time.monotonic()

            def record(outcome: Outcome, error: BaseException | None = None, started: float = started) -> None:
                attempts.append(_attempt(link, outcome, started, error))
                metrics.record_attempt(family.kind, link.name, outcome, attempts[-1].ms)

            try:
                reply = self._guard.call(link.name, limits, tokens, lambda: self._invoke(family, request, link))
            except SoftTimeLimitExceeded:
                raise
            except (InvalidRequest, PermanentError) as exc:
                stops_chain = isinstance(exc, InvalidRequest) or exc.stops_chain
                record("rejected" if stops_chain else "permanent_error", exc)
                if stops_chain:
                    raise
                if isinstance(exc, AuthError):
                    log.error("%s rejected our credentials: %s; check its key", link.name, exc)
                return None
            except CircuitOpen as exc:
                record("circuit_open", exc)
                retry_after_hints.append(self._settings.breaker.reset_timeout_s)
                return None
            except RetryableError as exc:
                record("rate_limited" if isinstance(exc, RateLimited) else "retryable_error", exc)
                if exc.retry_after_s is not None:
                    retry_after_hints.append(exc.retry_after_s)
                wait_s = wait_before_retry(try_number, exc.retry_after_s, retry.backoff_base_s, retry.backoff_cap_s)
                if try_number + 1 == retry.attempts_per_provider or wait_s > retry.max_inline_wait_s:
                    return None
                self._sleep(wait_s)
            except Exception as exc:
                # An adapter bug must not take the whole chain down: record it, log it, try the next one.
                log.exception("provider %s failed unexpectedly", link.name)
                record("permanent_error", exc)
                return None
            else:
                record("ok")
                return reply
        return None

    def _invoke(self, family: Family, request: BaseModel, link: Link) -> Reply[BaseModel]:
        provider = self._instance(family.kind, link)
        reply = family.invoke(provider, request, link.model)
        try:
            output = family.output_model.model_validate(reply.output)
        except ValidationError as exc:
            raise TruncatedOutput(
                f"{link.name} returned a {family.kind} output that does not validate: {describe_validation_error(exc)}"
            ) from None
        return Reply(output, reply.usage)

    def _instance(self, kind: Kind, link: Link) -> Provider:
        key = (kind, link.name)
        if key not in self._instances:
            cls = self._registry.load(kind, link.name)
            self._instances[key] = cls(link.settings)
        return self._instances[key]

    def _entries_for(self, kind: Kind, requested_model: str | None) -> list[ChainEntry]:
        chain = list(self._settings.chains[kind])
        if requested_model is None:
            return chain
        if self._settings.mode == "mock":
            return [ChainEntry(provider=MOCK, model=requested_model)]
        serving = [
            ChainEntry(provider=entry.provider, model=requested_model)
            for entry in chain
            if requested_model in (entry.model, *self._settings.providers[entry.provider].models)
            or entry.provider == MOCK
        ]
        if not serving:
            served = sorted({entry.model for entry in chain})
            raise InvalidRequest(
                f"no provider in the {kind} chain serves model {requested_model!r}; served: {', '.join(served)}"
            )
        return serving

    def _link(self, kind: Kind, entry: ChainEntry) -> Link:
        settings = self._settings.providers[entry.provider]
        return Link(entry.provider, entry.model, settings, unavailable_reason(self._registry, kind, settings))

    def _mock_settings(self) -> ProviderSettings:
        return self._settings.providers.get(MOCK, MOCK_SETTINGS)

    @staticmethod
    def _exhausted(kind: Kind, attempts: list[Attempt], retry_after_hints: list[float]) -> ChainExhausted:
        retryable = any(attempt.outcome in RETRYABLE_OUTCOMES for attempt in attempts)
        summary = "; ".join(f"{a.provider}:{a.model} {a.outcome} ({a.error})" for a in attempts) or "empty chain"
        return ChainExhausted(
            f"every provider in the {kind} chain failed: {summary}",
            [attempt.model_dump(mode="json") for attempt in attempts],
            retryable,
            min(retry_after_hints) if retry_after_hints else None,
        )


def _attempt(link: Link, outcome: Outcome, started: float, error: BaseException | None) -> Attempt:
    return Attempt(
        provider=link.name,
        model=link.model,
        outcome=outcome,
        error=None if error is None else f"{type(error).__name__}: {error}",
        ms=round((time.monotonic() - started) * 1000, 3),
    )
