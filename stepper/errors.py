"""The one exception tree of stepper.

::

    StepperError
    ├── ConfigError                  bad settings: fail at start-up, loudly
    ├── InvalidRequest               the caller's input is wrong: never retried, stops the chain
    ├── ProviderError                one provider failed one call
    │   ├── RetryableError           worth another try, here or on the next provider
    │   │   ├── Timeout
    │   │   │   └── FirstTokenTimeout  no first byte within first_token_timeout_s: next provider at once
    │   │   ├── RateLimited          carries retry_after_s
    │   │   ├── Unavailable          5xx, resets, refused connections
    │   │   ├── CircuitOpen          the fleet-wide breaker rejects calls for now
    │   │   └── TruncatedOutput      cut off or not valid against the output model
    │   └── PermanentError           this provider will not serve this request as it is
    │       ├── AuthError            bad or missing credentials: next provider, no breaker trip
    │       ├── UnsupportedInput     this provider cannot do it: next provider
    │       │   ├── ContextOverflow  too large for this model's context: next provider whose budget fits
    │       │   └── UnsupportedParameter  the server refuses an optional parameter: retried without it
    │       ├── UnprocessableInput   an engine failed on this one input (crashed, or cannot take it): stops
    │       │                        the chain, and never counts against the provider's breaker
    │       └── ContentRejected      a safety refusal of the content itself: stops the chain (or not: a
    │                                chain's stepper_on_content_filter)
    ├── ChainExhausted               every provider in the chain failed; carries each attempt
    ├── DeadlineExceeded             the request's deadline_s was spent before an answer; carries each attempt
    ├── Cancelled                    the task was revoked (stepper.cancel) while it ran; carries each attempt
    ├── PoisonMessage                the task's runs killed their worker max_deliveries times: not run again
    ├── DeliveryFailed               a webhook receiver never accepted the outcome
    ├── WorkflowFailed               a workflow's piece failed for good: the workflow waits for resume
    ├── BudgetExhausted              a spend budget (provider, model, gateway key; day or month) is spent
    └── BrokerUnavailable            a producer cannot reach Redis: nothing was submitted

Every exception keeps its constructor arguments JSON-serialisable and in ``args``, so Celery's JSON
result backend can rebuild it for a producer's ``.get()`` with the same type and message.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthError",
    "BrokerUnavailable",
    "BudgetExhausted",
    "Cancelled",
    "ChainExhausted",
    "CircuitOpen",
    "ConfigError",
    "ContentRejected",
    "ContextOverflow",
    "DeadlineExceeded",
    "DeliveryFailed",
    "FirstTokenTimeout",
    "InvalidRequest",
    "PermanentError",
    "PoisonMessage",
    "ProviderError",
    "RateLimited",
    "RetryableError",
    "StepperError",
    "Timeout",
    "TruncatedOutput",
    "Unavailable",
    "UnprocessableInput",
    "UnsupportedInput",
    "UnsupportedParameter",
    "WorkflowFailed",
]


class StepperError(Exception):
    """Base of every error stepper raises on purpose."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class ConfigError(StepperError):
    """The deployment's settings are wrong; the message says which setting and how to fix it."""


class InvalidRequest(StepperError):
    """The request itself is wrong. It is never retried and never reaches (another) provider."""


class BrokerUnavailable(StepperError):
    """A producer could not reach Redis (broker, result backend or cache); nothing was submitted."""


class ProviderError(StepperError):
    """One provider failed one call."""

    #: Whether this failure counts towards opening the provider's circuit breaker.
    trips_breaker = True
    #: Whether the chain must stop here because another provider would fail the same way.
    stops_chain = False
    #: Whether the same provider may be tried again for this request (else the chain moves on at once).
    retry_here = True


class RetryableError(ProviderError):
    """A transient failure: the same call may succeed later or elsewhere."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message, retry_after_s)

    @property
    def retry_after_s(self) -> float | None:
        """Seconds the provider asked us to wait (Retry-After), when it said so."""
        value: float | None = self.args[1]
        return value


class Timeout(RetryableError):
    """The provider did not answer within the configured timeout."""


class FirstTokenTimeout(Timeout):
    """Not one byte of the answer arrived within the provider's ``first_token_timeout_s``: nothing reached the
    caller yet, so the chain moves on to the next provider at once instead of waiting on this one again."""

    retry_here = False


class Unavailable(RetryableError):
    """The provider answered with a server error or the connection failed."""


class RateLimited(RetryableError):
    """The provider, or our own fleet-wide limit, asks us to slow down. A provider that is busy is not broken:
    this never counts towards its breaker; a vendor's Retry-After becomes a fleet-wide cooldown instead."""

    trips_breaker = False


class CircuitOpen(RetryableError):
    """The fleet-wide breaker for this provider is open; the call was not made."""

    trips_breaker = False


class TruncatedOutput(RetryableError):
    """The answer was cut off or does not validate against the output model: never hand it to a caller."""


class PermanentError(ProviderError):
    """This provider will not serve this request however often we ask."""

    trips_breaker = False


class AuthError(PermanentError):
    """Credentials are missing, wrong or lack permission. Reported loudly; the chain moves on."""


class UnsupportedInput(PermanentError):
    """This provider cannot handle this input (a model, a language, a format); another may."""


class ContextOverflow(UnsupportedInput):
    """The request is larger than this model's context window (the vendor said so, or stepper's estimate).
    A provider with a larger budget may take it: the chain skips those whose budget is smaller than
    ``requested_tokens`` (when known) and tries the rest."""

    def __init__(self, message: str, requested_tokens: int | None = None) -> None:
        super().__init__(message, requested_tokens)

    @property
    def requested_tokens(self) -> int | None:
        """Tokens the request needs, as the vendor counted them (or stepper estimated), when known."""
        value: int | None = self.args[1]
        return value


class UnsupportedParameter(UnsupportedInput):
    """The server refused an optional parameter stepper sent (``stream_options`` on a strict server,
    ``temperature`` on a reasoning model). The adapter remembers it fleet-wide and the chain tries the same
    provider once more without it; a parameter the request cannot do without makes the chain move on."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message, param)

    @property
    def param(self) -> str:
        """The top-level request field the server refused, e.g. ``stream_options``."""
        value: str = self.args[1]
        return value


class UnprocessableInput(PermanentError):
    """An engine failed on this one input: it crashed on it (a segfault, an exception inside the engine) or
    cannot take it. The request fails here: another try would fail the same way, and the failure says nothing
    about the provider's health, so it never counts towards its circuit breaker."""

    stops_chain = True


class ContentRejected(PermanentError):
    """The provider refused the content itself (a safety filter); the next provider would too."""

    stops_chain = True


class _CarriesAttempts:
    """The ``attempts`` of an error that ends a task: one JSON object each (run, provider, model, outcome,
    error, ms), from every broker run of the task, as in a successful result; kept in ``args[1]``."""

    args: tuple[Any, ...]

    @property
    def attempts(self) -> list[dict[str, Any]]:
        value: list[dict[str, Any]] = self.args[1]
        return value


class ChainExhausted(StepperError, _CarriesAttempts):
    """Every provider in the chain failed.

    ``retryable`` says whether at least one provider failed only transiently, so that a later try through the
    broker may succeed.
    """

    def __init__(
        self,
        message: str,
        attempts: list[dict[str, Any]] | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, attempts or [], retryable, retry_after_s)

    @property
    def retryable(self) -> bool:
        return bool(self.args[2])

    @property
    def retry_after_s(self) -> float | None:
        value: float | None = self.args[3]
        return value


class DeadlineExceeded(StepperError, _CarriesAttempts):
    """The request's ``deadline_s`` (the caller's budget, counted from submission) was spent: no attempt was
    started that could not finish in time, and none is made through the broker after it."""

    def __init__(self, message: str, attempts: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, attempts or [])


class Cancelled(StepperError, _CarriesAttempts):
    """The task was revoked (``stepper.cancel``, a gateway client that hung up) while it ran: its vendor call
    was closed and the task ends ``REVOKED``. The tokens used so far are settled against the rate limits."""

    def __init__(self, message: str, attempts: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, attempts or [])
        #: Tokens the cut call used so far (``input_tokens``, ``output_tokens``), as the adapter estimated
        #: them; settled against the provider's tokens-per-minute limit. In-process only: not serialised.
        self.partial_usage: dict[str, int] = {}


class PoisonMessage(StepperError):
    """The task's last runs each killed their worker process (``stepper_recovery["max_deliveries"]`` of them):
    it is failed and dead-lettered instead of being redelivered forever."""


class BudgetExhausted(StepperError):
    """A spend budget is spent (stepper.guards.spend): the message names it and when it resets. The chain records
    it as a provider's ``budget_exhausted`` attempt and moves on; the gateway answers a key's with 429."""


class DeliveryFailed(StepperError):
    """The webhook receiver did not accept the callback and stepper stopped trying (the outcome itself is in
    the result backend)."""


class WorkflowFailed(StepperError):
    """A piece of a workflow (a step's instruction, its narration...) failed for good. The pieces that
    succeeded are kept: fix the cause (a vendor back, a key set) and ``stepper.resume_workflow(id)`` runs only
    what is missing. ``args``: (message, workflow id)."""

    def __init__(self, message: str, workflow_id: str = "") -> None:
        super().__init__(message, workflow_id)

    @property
    def workflow_id(self) -> str:
        return str(self.args[1])
