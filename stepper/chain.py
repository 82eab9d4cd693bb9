"""The chain executor: try a kind's providers in order until one answers.

Around each provider call, from the outside in (written down once, here):

    budget check (the provider's and the model's spend caps, fleet-wide; spent: ``budget_exhausted``, next provider)
    retry loop (per provider: backoff with full jitter, Retry-After honoured, capped inline wait)
      -> deployment routing (``weighted``, ``least-busy`` or ``latency`` among the provider's deployments)
      -> admission (fleet-wide breaker state and rate limits of that deployment, one Redis round trip)
        -> pybreaker (counts transient failures, opens and closes the circuit)
          -> provider adapter, then validation of its output against the family's model

A provider with several ``deployments`` fails over between them first: a deployment whose breaker is open, that is
cooling down (Retry-After), at its rate limit, or that failed transiently or refused its key is left out for the
rest of the call and another one is tried at once; the provider's inline tries (with backoff) apply to the last
one left. The chain moves on to the next provider only when none of its deployments is left.

A transient failure moves on to the next provider once the provider's inline tries are spent (at once when
no first byte came within ``first_token_timeout_s``); an error caused by the request itself stops the chain;
a provider that cannot run here is recorded as ``skipped``. What a vendor's error means decides the rest:

- a request too large for a model's context (``ContextOverflow``) moves on, skipping the providers whose
  budget is smaller than what the vendor counted;
- an optional parameter the server refused (``UnsupportedParameter``; the adapter remembers it fleet-wide)
  is tried once more on the same provider without it;
- a content-filter refusal stops the chain, unless ``stepper_on_content_filter`` says "next" for the kind.

A task's scope (:class:`~stepper.infra.cancellation.TaskScope`) bounds the whole run: a cancelled task ends
with ``Cancelled`` and a spent ``deadline_s`` with ``DeadlineExceeded``, both carrying the attempts; no
attempt starts when the time left is shorter than the provider's usual answer time (its median over its
recent successes in this process). A successful answer's ``usage`` gets its ``cost`` and ``currency`` when
the model has a price, and that cost is charged to the provider, the model and the submitting gateway key.
When every provider failed, ``ChainExhausted`` carries every attempt and says whether a later try could
succeed (the task then goes back to the broker).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from celery.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel, ValidationError

from stepper.contracts import Provider, Reply
from stepper.errors import (
    AuthError,
    BudgetExhausted,
    Cancelled,
    ChainExhausted,
    CircuitOpen,
    ContentRejected,
    ContextOverflow,
    DeadlineExceeded,
    InvalidRequest,
    PermanentError,
    RateLimited,
    RetryableError,
    TruncatedOutput,
    UnsupportedParameter,
)
from stepper.families import Family
from stepper.guards.admission import Limits
from stepper.guards.backoff import wait_before_retry
from stepper.guards.breaker import AdmissionAhead, ProviderGuard
from stepper.guards.routing import MemoryRouteBackend, Pick, Router
from stepper.guards.spend import BudgetLine, Budgets, MemorySpendLedger, Scope, provider_lines
from stepper.infra import metrics, tracing
from stepper.infra.cancellation import TaskScope, current_task
from stepper.infra.logs import log_context
from stepper.registry import Registry, deployment_reasons
from stepper.schemas import Attempt, Kind, Outcome, TaskResult, describe_validation_error
from stepper.schemas.common import Usage
from stepper.settings import ChainEntry, DeploymentTarget, ProviderSettings, StepperSettings

log = logging.getLogger(__name__)

MOCK = "mock"
MOCK_SETTINGS = ProviderSettings.model_validate({"name": MOCK, "class": "stepper.providers.mock:MockProvider"})
RETRYABLE_OUTCOMES: frozenset[Outcome] = frozenset({"retryable_error", "rate_limited", "circuit_open"})
#: Optional parameters one provider may have refused in one task before the chain moves on.
MAX_REFUSED_PARAMETERS = 3
#: Successful answers per provider and model the usual answer time is the median of.
LATENCY_SAMPLES = 20


@dataclass(frozen=True)
class Link:
    """One resolved step of a chain: a provider and model, or the reason it is skipped here."""

    name: str
    model: str
    settings: ProviderSettings
    skip_reason: str | None = None
    #: The deployments that can run here (a provider without ``deployments`` has one).
    targets: tuple[DeploymentTarget, ...] = ()


@dataclass
class _Run:
    """One run of one chain: its scope and what it learnt so far."""

    kind: Kind
    scope: TaskScope
    #: The identity of the gateway key that submitted the task, charged with what it spends.
    gateway_key: str | None = None
    #: The admission of the first call, asked ahead with the cache probe (ChainExecutor.ahead), if it was.
    ahead: AdmissionAhead | None = None
    attempts: list[Attempt] = field(default_factory=list)
    retry_after_hints: list[float] = field(default_factory=list)
    #: Tokens the request needs, once a vendor counted them in a context-overflow error.
    needs_tokens: int | None = None
    skipped_for_deadline: bool = False

    def dumped(self) -> list[dict[str, object]]:
        return [attempt.model_dump(mode="json") for attempt in self.attempts]

    def check_live(self) -> None:
        """Raise ``Cancelled`` or ``DeadlineExceeded`` when the task must not start another attempt."""
        if self.scope.cancelled:
            raise Cancelled(f"the task was cancelled ({self.scope.reason or 'revoked'})", self.dumped())
        if self.scope.remaining_s() == 0:
            raise DeadlineExceeded(
                f"the request's deadline_s was spent after {len(self.attempts)} attempt(s)", self.dumped()
            )


class ChainExecutor:
    """Resolves and runs chains for one worker process; provider instances are made once and reused."""

    def __init__(
        self,
        settings: StepperSettings,
        registry: Registry,
        guard: ProviderGuard,
        sleep: Callable[[float], None] | None = None,
        *,
        router: Router | None = None,
        budgets: Budgets | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._guard = guard
        self._sleep = sleep
        self._router = router or Router(MemoryRouteBackend())
        self._budgets = budgets or Budgets(MemorySpendLedger(), settings)
        self._instances: dict[tuple[Kind, str], Provider] = {}
        # Per provider (and model): settings never change in a process, so these are worked out once.
        self._targets: dict[str, tuple[DeploymentTarget, ...]] = {}
        self._budget_lines_of: dict[tuple[str, str], list[BudgetLine]] = {}
        self._latencies: dict[tuple[Kind, str, str], deque[float]] = {}

    def resolve_chain(self, kind: Kind, requested_model: str | None = None) -> list[Link]:
        """The links to try for ``kind`` in this mode, optionally only those serving ``requested_model``."""
        entries = self._entries_for(kind, requested_model)
        mode = self._settings.mode
        if mode == "mock":
            return [self._mock_link(entry.model) for entry in entries]
        links = [self._link(kind, entry) for entry in entries]
        if mode == "hybrid" and links[-1].name != MOCK:
            links.append(self._mock_link(entries[0].model))
        return links

    def ahead(self, family: Family, request: BaseModel) -> AdmissionAhead | None:
        """The admission of the call a run of ``request`` makes first, for the cache probe to ask in its round trip
        when it misses (stepper.reuse.serving), or None unless that call is certain: the first provider has one
        deployment and no spend caps, and the request no ``deadline_s`` (which could skip it). Give it to
        :meth:`run`; end it with :meth:`release`."""
        if getattr(request, "deadline_s", None) is not None:
            return None
        try:
            link = self.resolve_chain(family.kind, getattr(request, "model", None))[0]
        except (InvalidRequest, IndexError):  # the run will say what is wrong
            return None
        if link.skip_reason is not None or len(link.targets) != 1 or self._budget_lines(link):
            return None
        target = link.targets[0]
        limits = Limits(rpm=target.settings.rpm, tpm=target.settings.tpm)
        return self._guard.ahead(target.guard, limits, family.estimate_tokens(request) if limits.tpm else 0)

    def release(self, ahead: AdmissionAhead) -> None:
        """End an admission from :meth:`ahead` (what it took for a call never made is given back)."""
        self._guard.release(ahead)

    def run(
        self,
        family: Family,
        request: BaseModel,
        scope: TaskScope | None = None,
        gateway_key: str | None = None,
        ahead: AdmissionAhead | None = None,
    ) -> TaskResult:
        """The first valid answer along the chain.

        ``scope`` is the task's (cancellation, deadline); none: a run that is never cancelled and has no
        deadline. ``gateway_key``: the identity of the gateway key that submitted it, charged with its cost.
        ``ahead``: the first call's admission, asked already (:meth:`ahead`). Raises ``InvalidRequest`` or a
        chain-stopping ``PermanentError``, ``Cancelled``, ``DeadlineExceeded`` or ``ChainExhausted``, each of
        the last three carrying the attempts.
        """
        run = _Run(family.kind, scope or TaskScope(), gateway_key, ahead)
        token = current_task.set(run.scope)  # the HTTP layer cuts calls by it
        try:
            return self._run(family, request, run)
        finally:
            current_task.reset(token)

    def _run(self, family: Family, request: BaseModel, run: _Run) -> TaskResult:
        started = time.monotonic()
        for link in self.resolve_chain(family.kind, getattr(request, "model", None)):
            run.check_live()
            skip_reason = link.skip_reason or self._too_small(link, run) or self._too_slow(link, run)
            if skip_reason is not None:
                run.attempts.append(
                    Attempt(provider=link.name, model=link.model, outcome="skipped", error=skip_reason, ms=0)
                )
                continue
            if (spent := self._budgets.exhausted(self._budget_lines(link))) is not None:
                self._record(link, run, "budget_exhausted", time.monotonic(), BudgetExhausted(spent.message()))
                continue
            context = log_context.set({**log_context.get(), "provider": link.name})
            try:
                with tracing.span("stepper.provider", {"stepper.provider": link.name, "stepper.model": link.model}):
                    reply = self._try_provider(family, request, link, run)
            finally:
                log_context.reset(context)
            if reply is not None:
                first = run.attempts[0].provider if run.attempts else None
                usage = self._priced(link, run, reply.usage)
                metrics.record_reply(family.kind, link.name, first, usage)
                return TaskResult(
                    kind=family.kind,
                    output=reply.output.model_dump(mode="json"),
                    provider=link.name,
                    model=link.model,
                    attempts=run.attempts,
                    elapsed_ms=round((time.monotonic() - started) * 1000, 3),
                    usage=usage,
                )
        if run.skipped_for_deadline or run.scope.remaining_s() == 0:
            raise DeadlineExceeded(
                f"no provider in the {family.kind} chain could answer within the request's deadline_s: "
                f"{_summary(run.attempts)}",
                run.dumped(),
            )
        raise self._exhausted(family.kind, run)

    def _try_provider(self, family: Family, request: BaseModel, link: Link, run: _Run) -> Reply[BaseModel] | None:
        """Up to ``attempts_per_provider`` tries of the last deployment left, after one of each other deployment;
        the reply, or None to move on to the next provider."""
        retry = self._settings.retry
        tokens = family.estimate_tokens(request) if any(target.settings.tpm for target in link.targets) else 0
        targets = list(link.targets)
        tries = refused_parameters = 0
        while targets:
            run.check_live()
            pick = self._router.pick(link.name, link.settings.strategy, targets)
            target = pick.target
            limits = Limits(rpm=target.settings.rpm, tpm=target.settings.tpm)
            started = time.monotonic()
            run.scope.last_first_byte_s = None
            try:
                call = partial(self._invoke, family, request, link, pick)
                reply = self._guard.call(target.guard, limits, tokens if limits.tpm else 0, call, run.ahead)
            except SoftTimeLimitExceeded:
                self._router.done(pick, None)
                raise
            except Exception as exc:  # noqa: BLE001  (judged: recorded, then raised, retried or moved on from)
                self._router.done(pick, None)
                verdict = self._judge(family, link, run, exc, started, target=target)
                if verdict == "again":  # the adapter leaves the refused parameter out now: not a try of its own
                    refused_parameters += 1
                    if refused_parameters > MAX_REFUSED_PARAMETERS:
                        return None
                    continue
                if len(targets) > 1 and _deployment_fault(exc):  # another deployment may serve it at once
                    targets.remove(target)
                    continue
                if verdict == "next":
                    return None
                tries += 1
                hint = exc.retry_after_s if isinstance(exc, RetryableError) else None
                wait_s = wait_before_retry(tries - 1, hint, retry.backoff_base_s, retry.backoff_cap_s)
                remaining_s = run.scope.remaining_s()
                if (
                    tries == retry.attempts_per_provider
                    or wait_s > retry.max_inline_wait_s
                    or (remaining_s is not None and wait_s >= remaining_s)
                ):
                    return None
                (self._sleep or run.scope.sleep)(wait_s)
            else:
                elapsed_s = time.monotonic() - started
                self._router.done(pick, run.scope.last_first_byte_s or elapsed_s)
                self._record(link, run, "ok", started, target=target)
                self._latency(family.kind, link).append(run.attempts[-1].ms / 1000)
                return reply
        return None

    def _judge(
        self, family: Family, link: Link, run: _Run, exc: Exception, started: float, *, target: DeploymentTarget
    ) -> Literal["retry", "again", "next"]:
        """Record a failed attempt and decide: retry this provider, try it ``again`` at once (a refused
        optional parameter), or move on to the ``next``. Raises what ends the chain here."""

        def record(outcome: Outcome) -> None:
            self._record(link, run, outcome, started, exc, target=target)

        if isinstance(exc, Cancelled | DeadlineExceeded):
            record("cancelled" if isinstance(exc, Cancelled) else "deadline")
            raise type(exc)(str(exc), run.dumped()) from None
        if isinstance(exc, UnsupportedParameter):
            record("unsupported_parameter")
            return "again"
        if isinstance(exc, ContextOverflow):
            record("too_large")
            if exc.requested_tokens:
                run.needs_tokens = max(run.needs_tokens or 0, exc.requested_tokens)
            return "next"
        if isinstance(exc, InvalidRequest | PermanentError):
            stops_chain = isinstance(exc, InvalidRequest) or (exc.stops_chain and not self._moves_on(family, exc))
            record("rejected" if stops_chain else "permanent_error")
            if stops_chain:
                raise exc
            if isinstance(exc, AuthError):
                log.error("%s rejected our credentials: %s; check its key", link.name, exc)
            return "next"
        if isinstance(exc, CircuitOpen):
            record("circuit_open")
            run.retry_after_hints.append(self._settings.breaker.reset_timeout_s)
            return "next"
        if isinstance(exc, RetryableError):
            outcome: Outcome = "rate_limited" if isinstance(exc, RateLimited) else "retryable_error"
            record(outcome)
            if exc.retry_after_s is not None:
                run.retry_after_hints.append(exc.retry_after_s)
            return "retry" if exc.retry_here else "next"
        # An adapter bug must not take the whole chain down: record it, log it, try the next one.
        log.error("provider %s failed unexpectedly", link.name, exc_info=exc)
        record("permanent_error")
        return "next"

    @staticmethod
    def _record(
        link: Link,
        run: _Run,
        outcome: Outcome,
        started: float,
        error: BaseException | None = None,
        *,
        target: DeploymentTarget | None = None,
    ) -> None:
        deployment = target.label if target is not None else None
        run.attempts.append(_attempt(link, outcome, started, error, deployment))
        metrics.record_attempt(run.kind, link.name, outcome, run.attempts[-1].ms, deployment)

    def _budget_lines(self, link: Link) -> list[BudgetLine]:
        key = (link.name, link.model)
        if key not in self._budget_lines_of:
            declared = link.name in self._settings.providers
            self._budget_lines_of[key] = provider_lines(self._settings, link.name, link.model) if declared else []
        return self._budget_lines_of[key]

    def _priced(self, link: Link, run: _Run, usage: dict[str, int]) -> Usage:
        """``usage`` with the call's ``cost`` and ``currency`` when the model has a price, charged to the provider,
        the model and the gateway key."""
        price = self._settings.price_for(link.name, link.model)
        if price is None:
            return dict(usage)
        cost = price.cost(usage)
        scopes: list[tuple[Scope, str]] = [("provider", link.name), ("model", f"{link.name}:{link.model}")]
        if run.gateway_key:
            scopes.append(("key", run.gateway_key))
        self._budgets.charge(scopes, cost)
        metrics.record_spend(link.name, link.model, run.gateway_key, cost, price.currency)
        return {**usage, "cost": round(cost, 9), "currency": price.currency}

    def _moves_on(self, family: Family, exc: PermanentError) -> bool:
        """Whether a chain-stopping refusal moves on instead, as the deployment chose for this kind."""
        return isinstance(exc, ContentRejected) and self._settings.on_content_filter.get(family.kind) == "next"

    def _too_small(self, link: Link, run: _Run) -> str | None:
        """Why ``link`` cannot take a request a vendor already counted as too large, if it cannot."""
        if run.needs_tokens is None:
            return None
        budget = link.settings.budget_for(link.model)
        context = budget.input_tokens + budget.output_tokens
        if context >= run.needs_tokens:
            return None
        return f"its budget of {context} tokens is smaller than the {run.needs_tokens} this request needs"

    def _too_slow(self, link: Link, run: _Run) -> str | None:
        """Why ``link`` cannot answer within the deadline left, judging by its recent answers, if it cannot."""
        remaining_s = run.scope.remaining_s()
        samples = self._latency(run.kind, link)
        if remaining_s is None or not samples:
            return None
        usual_s = statistics.median(samples)
        if usual_s <= remaining_s:
            return None
        run.skipped_for_deadline = True
        return f"it usually answers in {usual_s:.2f}s and {remaining_s:.2f}s of deadline_s is left"

    def _latency(self, kind: Kind, link: Link) -> deque[float]:
        """Durations of ``link``'s last successful answers in this process (seconds)."""
        key = (kind, link.name, link.model)
        if key not in self._latencies:
            self._latencies[key] = deque(maxlen=LATENCY_SAMPLES)
        return self._latencies[key]

    def _invoke(self, family: Family, request: BaseModel, link: Link, pick: Pick) -> Reply[BaseModel]:
        provider = self._instance(family.kind, pick.target)
        reply = family.invoke(provider, request, link.model)
        try:
            output = family.output_model.model_validate(reply.output)
        except ValidationError as exc:
            raise TruncatedOutput(
                f"{link.name} returned a {family.kind} output that does not validate: {describe_validation_error(exc)}"
            ) from None
        return Reply(output, reply.usage)

    def _instance(self, kind: Kind, target: DeploymentTarget) -> Provider:
        """One provider object per kind and deployment (each with its own base URL and key)."""
        key = (kind, target.guard)
        if key not in self._instances:
            cls = self._registry.load(kind, target.settings.name)
            self._instances[key] = cls(target.settings)
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
        """The provider's deployments that can run here; when none can, the first one's reason to skip it."""
        settings = self._settings.providers[entry.provider]
        targets = deployment_reasons(self._registry, kind, self._targets_of(settings))
        usable = tuple(target for target, reason in targets if reason is None)
        return Link(entry.provider, entry.model, settings, None if usable else targets[0][1], usable)

    def _mock_link(self, model: str) -> Link:
        settings = self._settings.providers.get(MOCK, MOCK_SETTINGS)
        return Link(MOCK, model, settings, targets=self._targets_of(settings))

    def _targets_of(self, settings: ProviderSettings) -> tuple[DeploymentTarget, ...]:
        if settings.name not in self._targets:
            self._targets[settings.name] = settings.targets()
        return self._targets[settings.name]

    @staticmethod
    def _exhausted(kind: Kind, run: _Run) -> ChainExhausted:
        retryable = any(attempt.outcome in RETRYABLE_OUTCOMES for attempt in run.attempts)
        return ChainExhausted(
            f"every provider in the {kind} chain failed: {_summary(run.attempts)}",
            run.dumped(),
            retryable,
            min(run.retry_after_hints) if run.retry_after_hints else None,
        )


def _summary(attempts: list[Attempt]) -> str:
    return "; ".join(f"{a.provider}:{a.model} {a.outcome} ({a.error})" for a in attempts) or "empty chain"


def _deployment_fault(exc: Exception) -> bool:
    """Whether ``exc`` says something about one deployment (its breaker, limits, health or key) rather than
    about the request, so that another deployment of the same provider may serve it."""
    return isinstance(exc, CircuitOpen | RetryableError | AuthError)


def _attempt(
    link: Link, outcome: Outcome, started: float, error: BaseException | None, deployment: str | None
) -> Attempt:
    return Attempt(
        provider=link.name,
        deployment=deployment,
        model=link.model,
        outcome=outcome,
        error=None if error is None else f"{type(error).__name__}: {error}",
        ms=round((time.monotonic() - started) * 1000, 3),
    )
