"""The exception tree: its shape, its flags, and its survival through Celery's JSON result backend."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
from celery import Celery
from celery.backends.base import BaseBackend

from stepper import errors
from stepper.errors import (
    AuthError,
    ChainExhausted,
    CircuitOpen,
    ConfigError,
    ContentRejected,
    InvalidRequest,
    PermanentError,
    ProviderError,
    RateLimited,
    RetryableError,
    StepperError,
    Timeout,
    TruncatedOutput,
    Unavailable,
    UnprocessableInput,
    UnsupportedInput,
)

ATTEMPTS: list[dict[str, Any]] = [
    {"provider": "openai", "model": "gpt-4o-mini", "outcome": "rate_limited", "error": "RateLimited: slow", "ms": 3.5},
    {"provider": "mock", "model": "m", "outcome": "skipped", "error": None, "ms": 0.0},
]

#: One instance of every class in the module, with every constructor argument used.
EXAMPLES: list[StepperError] = [
    StepperError("something failed"),
    ConfigError("OPENAI_API_KEY is not set; set it or remove 'openai' from the chat chain"),
    InvalidRequest("invalid chat request: messages.0.role: Input should be 'system', 'user' or 'assistant'"),
    ProviderError("openai failed"),
    RetryableError("try again", 1.25),
    Timeout("openai did not answer within 30s"),
    RateLimited("openai answered 429", 2.5),
    RateLimited("no Retry-After"),
    Unavailable("openai answered 503", None),
    CircuitOpen("the circuit breaker of openai is open", 30.0),
    TruncatedOutput("finish_reason was length"),
    PermanentError("will not serve it"),
    AuthError("openai answered 401"),
    UnsupportedInput("no such model: gpt-9"),
    UnprocessableInput("espeak-ng crashed (SIGSEGV) on this text"),
    ContentRejected("refused by the safety filter"),
    errors.PoisonMessage("stepper.chat 3f2a was not run again: its last 3 runs killed their worker process"),
    errors.DeliveryFailed("https://example.com/hook answered 410 Gone; not retried"),
    errors.BudgetExhausted(
        "the daily budget of provider openai (20 USD) is spent (20.01 USD); it resets at 2026-12-02T00:00:00Z"
    ),
    errors.BrokerUnavailable("Redis at 127.0.0.1:6379 is unreachable (Connection refused); nothing was submitted"),
    errors.WorkflowFailed("piece write:1 failed: ChainExhausted: every provider failed", "3b0c7f0e-5d6a"),
    ChainExhausted("every provider in the chat chain failed", ATTEMPTS, True, 1.5),
    ChainExhausted("every provider failed, permanently", ATTEMPTS, False),
    ChainExhausted("empty chain"),
    errors.FirstTokenTimeout("vllm sent no answer within first_token_timeout_s=10"),
    errors.ContextOverflow("vllm answered 400: maximum context length is 8192 tokens", 9100),
    errors.ContextOverflow("about 9000 tokens exceed the budget"),
    errors.UnsupportedParameter(
        "vllm answered 422: body.stream_options: Extra inputs are not permitted", "stream_options"
    ),
    errors.DeadlineExceeded("the request's deadline_s of 5 was spent", ATTEMPTS),
    errors.Cancelled("the task was revoked while it ran", ATTEMPTS),
    errors.Cancelled("revoked before any attempt"),
]


def _classes_in_module() -> set[type[BaseException]]:
    return {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == errors.__name__
    }


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> BaseBackend:
    """A result backend with the JSON serializer stepper configures; no store behind it is needed."""
    # Celery's default loader would import the module this variable names (the test session sets it).
    monkeypatch.delenv("CELERY_CONFIG_MODULE", raising=False)
    app = Celery("stepper-errors-test", set_as_current=False)
    app.conf.result_serializer = "json"
    return BaseBackend(app=app, serializer="json")


def test_examples_cover_every_exception_class() -> None:
    assert {type(exc) for exc in EXAMPLES} == _classes_in_module()
    assert set(errors.__all__) == {cls.__name__ for cls in _classes_in_module()}


@pytest.mark.parametrize("exc", EXAMPLES, ids=lambda exc: type(exc).__name__)
def test_survives_celery_json_round_trip(exc: StepperError, backend: BaseBackend) -> None:
    stored = backend.decode(backend.encode(backend.prepare_exception(exc)))
    rebuilt = backend.exception_to_python(stored)
    assert type(rebuilt) is type(exc)
    assert str(rebuilt) == str(exc)
    assert rebuilt.args == exc.args


@pytest.mark.parametrize("exc", EXAMPLES, ids=lambda exc: type(exc).__name__)
def test_survives_the_round_trip_written_out(exc: StepperError) -> None:
    """The same steps as Celery's ``exception_to_python``, spelled out, through the json module."""
    payload = {"exc_type": type(exc).__qualname__, "exc_message": list(exc.args), "exc_module": type(exc).__module__}
    loaded = json.loads(json.dumps(payload))
    cls = getattr(errors, loaded["exc_type"])
    assert cls.__module__ == loaded["exc_module"]
    rebuilt = cls(*loaded["exc_message"])
    assert type(rebuilt) is type(exc)
    assert str(rebuilt) == str(exc)


def test_rate_limited_keeps_retry_after(backend: BaseBackend) -> None:
    rebuilt = backend.exception_to_python(
        backend.decode(backend.encode(backend.prepare_exception(RateLimited("429 from openai", 2.5))))
    )
    assert isinstance(rebuilt, RateLimited)
    assert rebuilt.retry_after_s == 2.5
    assert str(rebuilt) == "429 from openai"


def test_chain_exhausted_keeps_attempts_and_verdict(backend: BaseBackend) -> None:
    exc = ChainExhausted("every provider failed", ATTEMPTS, True, 1.5)
    rebuilt = backend.exception_to_python(backend.decode(backend.encode(backend.prepare_exception(exc))))
    assert isinstance(rebuilt, ChainExhausted)
    assert rebuilt.attempts == ATTEMPTS
    assert rebuilt.retryable is True
    assert rebuilt.retry_after_s == 1.5
    assert str(rebuilt) == "every provider failed"


def test_chain_exhausted_defaults() -> None:
    exc = ChainExhausted("nothing answered")
    assert exc.attempts == []
    assert exc.retryable is False
    assert exc.retry_after_s is None


def test_retryable_error_without_retry_after() -> None:
    exc = Unavailable("503")
    assert exc.retry_after_s is None
    assert str(exc) == "503"


def test_str_of_an_error_without_arguments_is_its_class_name() -> None:
    assert str(StepperError()) == "StepperError"
    assert str(ConfigError()) == "ConfigError"


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        (ConfigError, StepperError),
        (InvalidRequest, StepperError),
        (ProviderError, StepperError),
        (RetryableError, ProviderError),
        (Timeout, RetryableError),
        (RateLimited, RetryableError),
        (Unavailable, RetryableError),
        (CircuitOpen, RetryableError),
        (TruncatedOutput, RetryableError),
        (PermanentError, ProviderError),
        (AuthError, PermanentError),
        (UnsupportedInput, PermanentError),
        (UnprocessableInput, PermanentError),
        (ContentRejected, PermanentError),
        (ChainExhausted, StepperError),
        (errors.FirstTokenTimeout, Timeout),
        (errors.ContextOverflow, UnsupportedInput),
        (errors.UnsupportedParameter, UnsupportedInput),
        (errors.DeadlineExceeded, StepperError),
        (errors.Cancelled, StepperError),
    ],
)
def test_tree_matches_the_drawing(cls: type[StepperError], parent: type[StepperError]) -> None:
    # One parent in the tree; any other base is a mixin outside it (the attempts an error carries).
    assert cls.__bases__[0] is parent
    assert not any(issubclass(base, StepperError) for base in cls.__bases__[1:])


def test_branches_do_not_overlap() -> None:
    assert not issubclass(InvalidRequest, ProviderError)
    assert not issubclass(ChainExhausted, ProviderError)
    assert not issubclass(ConfigError, ProviderError)
    retryable: list[type[ProviderError]] = [Timeout, RateLimited, Unavailable, CircuitOpen, TruncatedOutput]
    permanent: list[type[ProviderError]] = [AuthError, UnsupportedInput, UnprocessableInput, ContentRejected]
    for cls in retryable:
        assert not issubclass(cls, PermanentError)
    for cls in permanent:
        assert not issubclass(cls, RetryableError)


@pytest.mark.parametrize(
    ("cls", "trips_breaker", "stops_chain"),
    [
        (Timeout, True, False),
        (RateLimited, False, False),
        (Unavailable, True, False),
        (TruncatedOutput, True, False),
        (CircuitOpen, False, False),
        (AuthError, False, False),
        (UnsupportedInput, False, False),
        (UnprocessableInput, False, True),
        (ContentRejected, False, True),
    ],
)
def test_breaker_and_chain_flags(cls: type[ProviderError], trips_breaker: bool, stops_chain: bool) -> None:
    exc = cls("x")
    assert exc.trips_breaker is trips_breaker
    assert exc.stops_chain is stops_chain
