"""The one exception tree of stepper.

::

    StepperError
    ├── ConfigError                  bad settings: fail at start-up, loudly
    ├── InvalidRequest               the caller's input is wrong: never retried, stops the chain
    ├── ProviderError                one provider failed one call
    │   ├── RetryableError           worth another try, here or on the next provider
    │   │   ├── Timeout
    │   │   ├── RateLimited          carries retry_after_s
    │   │   ├── Unavailable          5xx, resets, refused connections
    │   │   ├── CircuitOpen          the fleet-wide breaker rejects calls for now
    │   │   └── TruncatedOutput      cut off or not valid against the output model
    │   └── PermanentError           this provider will not serve this request as it is
    │       ├── AuthError            bad or missing credentials: next provider, no breaker trip
    │       ├── UnsupportedInput     this provider cannot do it: next provider
    │       ├── UnprocessableInput   an engine failed on this one input (crashed, or cannot take it): stops
    │       │                        the chain, and never counts against the provider's breaker
    │       └── ContentRejected      a safety refusal of the content itself: stops the chain
    ├── ChainExhausted               every provider in the chain failed; carries each attempt
    ├── PoisonMessage                the task's runs killed their worker max_deliveries times: not run again
    ├── DeliveryFailed               a webhook receiver never accepted the outcome
    └── BrokerUnavailable            a producer cannot reach Redis: nothing was submitted

Every exception keeps its constructor arguments JSON-serialisable and in ``args``, so Celery's JSON
result backend can rebuild it for a producer's ``.get()`` with the same type and message.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthError",
    "BrokerUnavailable",
    "ChainExhausted",
    "CircuitOpen",
    "ConfigError",
    "ContentRejected",
    "DeliveryFailed",
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


class UnprocessableInput(PermanentError):
    """An engine failed on this one input: it crashed on it (a segfault, an exception inside the engine) or
    cannot take it. The request fails here: another try would fail the same way, and the failure says nothing
    about the provider's health, so it never counts towards its circuit breaker."""

    stops_chain = True


class ContentRejected(PermanentError):
    """The provider refused the content itself (a safety filter); the next provider would too."""

    stops_chain = True


class ChainExhausted(StepperError):
    """Every provider in the chain failed.

    ``attempts`` holds one JSON object per attempt (provider, model, outcome, error, ms); ``retryable`` says
    whether at least one provider failed only transiently, so that a later try through the broker may succeed.
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
    def attempts(self) -> list[dict[str, Any]]:
        value: list[dict[str, Any]] = self.args[1]
        return value

    @property
    def retryable(self) -> bool:
        return bool(self.args[2])

    @property
    def retry_after_s(self) -> float | None:
        value: float | None = self.args[3]
        return value


class PoisonMessage(StepperError):
    """The task's last runs each killed their worker process (``stepper_recovery["max_deliveries"]`` of them):
    it is failed and dead-lettered instead of being redelivered forever."""


class DeliveryFailed(StepperError):
    """The webhook receiver did not accept the callback and stepper stopped trying (the outcome itself is in
    the result backend)."""
