"""The chain executor: providers tried in order, retries, skips, stops, and the attempts it records."""

from __future__ import annotations

import time
from typing import Any, ClassVar, cast

import pytest
import redis
from celery.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel

from stepper.chain import ChainExecutor
from stepper.contracts import Provider, Reply
from stepper.errors import (
    AuthError,
    Cancelled,
    ChainExhausted,
    ContentRejected,
    ContextOverflow,
    DeadlineExceeded,
    FirstTokenTimeout,
    InvalidRequest,
    RateLimited,
    Timeout,
    TruncatedOutput,
    Unavailable,
    UnsupportedInput,
    UnsupportedParameter,
)
from stepper.families import FAMILIES
from stepper.guards.admission import GuardBackend, MemoryGuardBackend, RedisGuardBackend
from stepper.guards.breaker import ProviderGuard
from stepper.infra.cancellation import TaskScope
from stepper.providers.mock import MockProvider
from stepper.registry import Registry
from stepper.reuse.cache import ResultCache
from stepper.schemas import ChatOutput, ChatRequest, Kind, ReportOutput, TaskResult
from stepper.settings import BreakerSettings, CacheSettings, Mode, RetrySettings, StepperSettings
from tests.unit.factories import retry_settings, stepper_settings
from tests.unit.guards.harness import count_commands

Step = BaseException | Reply[BaseModel]


def answer(text: str) -> Reply[BaseModel]:
    output = ChatOutput.model_validate({"message": {"content": text}, "finish_reason": "stop"})
    return Reply(output, {"input_tokens": 3, "output_tokens": 1})


class Scripted(Provider):
    """A chat provider that plays its ``steps`` in order (the last one repeats) and records each call's model."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"chat"})
    steps: ClassVar[tuple[Step, ...]] = ()
    calls: ClassVar[list[str]]

    def complete(self, request: ChatRequest, model: str) -> Reply[ChatOutput]:
        step = self.steps[min(len(self.calls), len(self.steps) - 1)]
        self.calls.append(model)
        if isinstance(step, BaseException):
            raise step
        return cast(Reply[ChatOutput], step)


def scripted(*steps: Step) -> type[Scripted]:
    class Provider(Scripted):
        pass

    Provider.steps = steps
    Provider.calls = []
    return Provider


class Executor:
    """A ChainExecutor over test providers, a memory guard and a recording sleep."""

    def __init__(
        self,
        providers: dict[str, type[Provider]],
        chain: list[str],
        *,
        mode: Mode = "live",
        specs: dict[str, dict[str, Any]] | None = None,
        retry: RetrySettings | None = None,
        breaker: BreakerSettings | None = None,
        on_content_filter: dict[Kind, str] | None = None,
        guards: GuardBackend | None = None,
    ) -> None:
        specs = specs or {}
        self.settings: StepperSettings = stepper_settings(
            mode=mode,
            providers={name: specs.get(name, {}) for name in providers},
            chains={"chat": chain},
            retry=retry,
            breaker=breaker,
            on_content_filter=on_content_filter,
        )
        self.registry = Registry()
        self.registry.register("chat", "mock", MockProvider)
        for name, cls in providers.items():
            self.registry.register("chat", name, cls)
        self.sleeps: list[float] = []
        # The guard's clock moves with the chain's (recorded, not slept) waits, as it would in real time.
        backend = guards or MemoryGuardBackend(clock=lambda: time.time() + sum(self.sleeps))
        guard = ProviderGuard(backend, self.settings.breaker, max_wait_s=0)
        self.executor = ChainExecutor(self.settings, self.registry, guard, sleep=self.sleeps.append)

    def run(self, scope: TaskScope | None = None, **request: Any) -> TaskResult:
        family = FAMILIES["chat"]
        parsed = family.parse({"messages": [{"role": "user", "content": "hi"}], **request})
        return self.executor.run(family, parsed, scope)

    def exhausted(self, **request: Any) -> ChainExhausted:
        with pytest.raises(ChainExhausted) as raised:
            self.run(**request)
        return raised.value


def outcomes(result: TaskResult) -> list[tuple[str, str]]:
    return [(attempt.provider, attempt.outcome) for attempt in result.attempts]


def test_first_provider_answers() -> None:
    first = scripted(answer("hello"))
    chain = Executor({"first": first}, ["first:m1"])
    result = chain.run()
    assert (result.kind, result.provider, result.model) == ("chat", "first", "m1")
    assert result.output == {
        "message": {"role": "assistant", "content": "hello", "tool_calls": None},
        "finish_reason": "stop",
        "logprobs": None,
    }
    assert result.usage == {"input_tokens": 3, "output_tokens": 1}
    assert outcomes(result) == [("first", "ok")]
    assert result.attempts[0].error is None
    assert first.calls == ["m1"]
    assert chain.sleeps == []


def test_transient_failure_moves_on_after_the_retries() -> None:
    first, second = scripted(Unavailable("503 from first")), scripted(answer("from second"))
    chain = Executor({"first": first, "second": second}, ["first:m1", "second:m2"], retry=retry_settings())
    result = chain.run()
    assert (result.provider, result.model) == ("second", "m2")
    assert outcomes(result) == [("first", "retryable_error"), ("first", "retryable_error"), ("second", "ok")]
    assert result.attempts[0].error == "Unavailable: 503 from first"
    assert first.calls == ["m1", "m1"]
    assert len(chain.sleeps) == 1
    assert 0 <= chain.sleeps[0] <= chain.settings.retry.backoff_base_s


def test_attempts_per_provider_is_honoured() -> None:
    first = scripted(Timeout("slow"), Timeout("slow"), Timeout("slow"), answer("third time lucky"))
    chain = Executor({"first": first}, ["first:m1"], retry=retry_settings(attempts_per_provider=4))
    result = chain.run()
    assert outcomes(result) == [("first", "retryable_error")] * 3 + [("first", "ok")]
    assert len(chain.sleeps) == 3


def test_short_retry_after_is_waited_inline() -> None:
    first = scripted(RateLimited("429", 0.3), answer("after the wait"))
    chain = Executor({"first": first}, ["first:m1"], retry=retry_settings(max_inline_wait_s=2.0))
    result = chain.run()
    assert result.provider == "first"
    assert outcomes(result) == [("first", "rate_limited"), ("first", "ok")]
    assert chain.sleeps == [0.3]


def test_long_retry_after_moves_on_without_waiting() -> None:
    first, second = scripted(RateLimited("429", 5.0)), scripted(answer("second"))
    chain = Executor({"first": first, "second": second}, ["first:m1", "second:m2"])
    result = chain.run()
    assert result.provider == "second"
    assert outcomes(result) == [("first", "rate_limited"), ("second", "ok")]
    assert first.calls == ["m1"]
    assert chain.sleeps == []


@pytest.mark.parametrize("error", [InvalidRequest("prompt too long"), ContentRejected("refused")], ids=repr)
def test_request_errors_stop_the_chain(error: Exception) -> None:
    first, second = scripted(error), scripted(answer("never"))
    chain = Executor({"first": first, "second": second}, ["first:m1", "second:m2"])
    with pytest.raises(type(error)) as raised:
        chain.run()
    assert raised.value is error
    assert first.calls == ["m1"]
    assert second.calls == []


@pytest.mark.parametrize("error", [AuthError("401 bad key"), UnsupportedInput("no such model")], ids=repr)
def test_permanent_errors_move_on_without_retry(error: Exception) -> None:
    first, second = scripted(error), scripted(answer("second"))
    chain = Executor({"first": first, "second": second}, ["first:m1", "second:m2"])
    result = chain.run()
    assert result.provider == "second"
    assert outcomes(result) == [("first", "permanent_error"), ("second", "ok")]
    assert result.attempts[0].error == f"{type(error).__name__}: {error}"
    assert first.calls == ["m1"]
    assert chain.sleeps == []


def test_provider_without_its_key_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEPPER_TEST_ABSENT_KEY", raising=False)
    monkeypatch.delenv("STEPPER_TEST_ABSENT_KEY_FILE", raising=False)
    keyed, second = scripted(answer("never")), scripted(answer("second"))
    chain = Executor(
        {"keyed": keyed, "second": second},
        ["keyed:m1", "second:m2"],
        specs={"keyed": {"api_key_env": "STEPPER_TEST_ABSENT_KEY"}},
    )
    result = chain.run()
    assert result.provider == "second"
    assert outcomes(result) == [("keyed", "skipped"), ("second", "ok")]
    skipped = result.attempts[0]
    assert skipped.model == "m1"
    assert skipped.error is not None
    assert "STEPPER_TEST_ABSENT_KEY" in skipped.error
    assert keyed.calls == []


def test_provider_with_its_key_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPPER_TEST_PRESENT_KEY", "sk-test")
    keyed = scripted(answer("keyed"))
    chain = Executor({"keyed": keyed}, ["keyed:m1"], specs={"keyed": {"api_key_env": "STEPPER_TEST_PRESENT_KEY"}})
    assert chain.run().provider == "keyed"
    assert "sk-test" not in repr(chain.run().attempts)


def test_all_transient_failures_exhaust_the_chain_retryably() -> None:
    first, second = scripted(Unavailable("503", 1.5)), scripted(RateLimited("429", 4.0))
    chain = Executor({"first": first, "second": second}, ["first:m1", "second:m2"])
    exc = chain.exhausted()
    assert exc.retryable is True
    assert exc.retry_after_s == 1.5
    assert [(attempt["provider"], attempt["outcome"]) for attempt in exc.attempts] == [
        ("first", "retryable_error"),
        ("first", "retryable_error"),
        ("second", "rate_limited"),
    ]
    assert exc.attempts[0]["error"] == "Unavailable: 503"
    assert "every provider in the chat chain failed" in str(exc)
    assert "first:m1 retryable_error" in str(exc)
    assert chain.sleeps == [1.5]


def test_only_permanent_failures_are_not_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEPPER_TEST_ABSENT_KEY", raising=False)
    monkeypatch.delenv("STEPPER_TEST_ABSENT_KEY_FILE", raising=False)
    first, keyed = scripted(AuthError("401")), scripted(answer("never"))
    chain = Executor(
        {"first": first, "keyed": keyed},
        ["first:m1", "keyed:m2"],
        specs={"keyed": {"api_key_env": "STEPPER_TEST_ABSENT_KEY"}},
    )
    exc = chain.exhausted()
    assert exc.retryable is False
    assert exc.retry_after_s is None
    assert [attempt["outcome"] for attempt in exc.attempts] == ["permanent_error", "skipped"]


@pytest.mark.parametrize(
    "output",
    [
        {"message": {"role": "assistant"}, "finish_reason": "stop"},
        {"message": {"role": "assistant", "content": "x"}, "finish_reason": "content_filter"},
        "just text",
        None,
        ReportOutput(title="t", summary="s", changes=[], impact="low", tags=[]),
    ],
    ids=["missing-content", "bad-finish-reason", "text", "none", "wrong-model"],
)
def test_output_that_does_not_validate_is_truncated_output(output: object) -> None:
    bad = scripted(Reply(cast(BaseModel, output)))
    good = scripted(answer("valid"))
    chain = Executor({"bad": bad, "good": good}, ["bad:m1", "good:m2"])
    result = chain.run()
    assert result.provider == "good"
    assert outcomes(result) == [("bad", "retryable_error"), ("bad", "retryable_error"), ("good", "ok")]
    error = result.attempts[0].error
    assert error is not None
    assert error.startswith(f"{TruncatedOutput.__name__}: bad returned a chat output that does not validate")


def test_output_given_as_a_dict_is_validated_and_accepted() -> None:
    as_dict = scripted(Reply(cast(BaseModel, {"message": {"content": "plain"}, "finish_reason": "length"})))
    result = Executor({"dicty": as_dict}, ["dicty:m1"]).run()
    assert result.output == {
        "message": {"role": "assistant", "content": "plain", "tool_calls": None},
        "finish_reason": "length",
        "logprobs": None,
    }


def test_unexpected_exception_is_recorded_and_the_next_provider_used() -> None:
    buggy, second = scripted(KeyError("choices")), scripted(answer("second"))
    chain = Executor({"buggy": buggy, "second": second}, ["buggy:m1", "second:m2"])
    result = chain.run()
    assert result.provider == "second"
    assert outcomes(result) == [("buggy", "permanent_error"), ("second", "ok")]
    assert result.attempts[0].error == "KeyError: 'choices'"
    assert buggy.calls == ["m1"]


def test_soft_time_limit_is_not_swallowed() -> None:
    slow, second = scripted(SoftTimeLimitExceeded()), scripted(answer("never"))
    chain = Executor({"slow": slow, "second": second}, ["slow:m1", "second:m2"])
    with pytest.raises(SoftTimeLimitExceeded):
        chain.run()
    assert second.calls == []


def test_open_circuit_is_recorded_and_skipped_without_a_call() -> None:
    first, second = scripted(Unavailable("503")), scripted(answer("second"))
    chain = Executor(
        {"first": first, "second": second},
        ["first:m1", "second:m2"],
        breaker=BreakerSettings(fail_max=2, reset_timeout_s=45.0),
    )
    assert chain.run().provider == "second"
    result = chain.run()
    assert outcomes(result) == [("first", "circuit_open"), ("second", "ok")]
    assert first.calls == ["m1", "m1"]
    second.steps = (Unavailable("503"),)
    exc = chain.exhausted()
    assert exc.retryable is True
    assert exc.retry_after_s == 45.0


def test_provider_instances_are_reused() -> None:
    made: list[int] = []

    class Counting(Scripted):
        steps = (answer("ok"),)
        calls: ClassVar[list[str]] = []

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            made.append(1)

    chain = Executor({"counting": Counting}, ["counting:m1"])
    for _ in range(3):
        chain.run()
    assert made == [1]


# --- modes -------------------------------------------------------------------------------------------------------


def test_mock_mode_answers_with_the_mock_and_the_chains_model() -> None:
    first = scripted(answer("never"))
    result = Executor({"first": first}, ["first:m1", "first:m2"], mode="mock").run()
    assert (result.provider, result.model) == ("mock", "m1")
    assert outcomes(result) == [("mock", "ok")]
    assert (ChatOutput.model_validate(result.output).message.content or "").startswith("[mock ")
    assert first.calls == []


def test_mock_mode_ignores_missing_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEPPER_TEST_ABSENT_KEY", raising=False)
    monkeypatch.delenv("STEPPER_TEST_ABSENT_KEY_FILE", raising=False)
    chain = Executor(
        {"keyed": scripted(answer("never"))},
        ["keyed:m1"],
        mode="mock",
        specs={"keyed": {"api_key_env": "STEPPER_TEST_ABSENT_KEY"}},
    )
    assert outcomes(chain.run()) == [("mock", "ok")]


def test_hybrid_mode_falls_back_to_the_mock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEPPER_TEST_ABSENT_KEY", raising=False)
    monkeypatch.delenv("STEPPER_TEST_ABSENT_KEY_FILE", raising=False)
    keyed = scripted(answer("never"))
    chain = Executor(
        {"keyed": keyed}, ["keyed:m1"], mode="hybrid", specs={"keyed": {"api_key_env": "STEPPER_TEST_ABSENT_KEY"}}
    )
    result = chain.run()
    assert (result.provider, result.model) == ("mock", "m1")
    assert outcomes(result) == [("keyed", "skipped"), ("mock", "ok")]
    assert keyed.calls == []


def test_hybrid_mode_prefers_a_working_provider() -> None:
    first = scripted(answer("real"))
    result = Executor({"first": first}, ["first:m1"], mode="hybrid").run()
    assert result.provider == "first"
    assert outcomes(result) == [("first", "ok")]


def test_hybrid_mode_does_not_add_a_second_mock() -> None:
    chain = Executor({"first": scripted(Unavailable("503"))}, ["first:m1", "mock:mock-chat"], mode="hybrid")
    assert [link.name for link in chain.executor.resolve_chain("chat")] == ["first", "mock"]


def test_live_mode_has_no_mock_fallback() -> None:
    chain = Executor({"first": scripted(Unavailable("503"))}, ["first:m1"], mode="live")
    assert [attempt["provider"] for attempt in chain.exhausted().attempts] == ["first", "first"]


# --- a requested model ------------------------------------------------------------------------------------------


def requested_model_chain() -> tuple[Executor, type[Scripted], type[Scripted]]:
    first, second = scripted(answer("first")), scripted(answer("second"))
    chain = Executor(
        {"first": first, "second": second},
        ["first:m1", "second:m2"],
        specs={"first": {"models": ["m1", "m1-large"]}, "second": {"models": ["m3"]}},
    )
    return chain, first, second


@pytest.mark.parametrize(("model", "provider"), [("m1", "first"), ("m1-large", "first"), ("m2", "second")])
def test_requested_model_selects_the_providers_serving_it(model: str, provider: str) -> None:
    chain, first, second = requested_model_chain()
    result = chain.run(model=model)
    assert (result.provider, result.model) == (provider, model)
    assert first.calls + second.calls == [model]


def test_requested_model_skips_providers_not_serving_it() -> None:
    chain, first, second = requested_model_chain()
    first.steps = (Unavailable("503"),)
    result = chain.run(model="m3")
    assert outcomes(result) == [("second", "ok")]
    assert first.calls == []
    assert second.calls == ["m3"]


def test_unserved_model_is_an_invalid_request() -> None:
    chain, first, second = requested_model_chain()
    with pytest.raises(InvalidRequest) as raised:
        chain.run(model="gpt-9")
    assert "'gpt-9'" in str(raised.value)
    assert "m1, m2" in str(raised.value)
    assert first.calls == second.calls == []


def test_mock_mode_answers_any_requested_model() -> None:
    result = Executor({"first": scripted(answer("never"))}, ["first:m1"], mode="mock").run(model="anything")
    assert (result.provider, result.model) == ("mock", "anything")


def test_a_context_overflow_moves_on_and_skips_providers_whose_budget_is_smaller() -> None:
    small, smaller, large = (
        scripted(ContextOverflow("small answered 400: maximum context length is 8192 tokens", 9100)),
        scripted(answer("never")),
        scripted(answer("from large")),
    )
    specs = {
        "small": {"budget": {"input_tokens": 6000, "output_tokens": 2048}},
        "smaller": {"budget": {"input_tokens": 4000, "output_tokens": 1000}},
        "large": {"budget": {"input_tokens": 32000, "output_tokens": 4096}},
    }
    providers: dict[str, type[Provider]] = {"small": small, "smaller": smaller, "large": large}
    chain = Executor(providers, ["small:m", "smaller:m", "large:m"], specs=specs)
    result = chain.run()
    assert result.provider == "large"
    assert outcomes(result) == [("small", "too_large"), ("smaller", "skipped"), ("large", "ok")]
    assert result.attempts[1].error == "its budget of 5000 tokens is smaller than the 9100 this request needs"
    assert smaller.calls == [] and small.calls == ["m"]


def test_a_refused_optional_parameter_is_tried_again_at_once_on_the_same_provider() -> None:
    first = scripted(UnsupportedParameter("first answered 422: stream_options", "stream_options"), answer("ok"))
    chain = Executor({"first": first}, ["first:m1"])
    result = chain.run()
    assert outcomes(result) == [("first", "unsupported_parameter"), ("first", "ok")]
    assert chain.sleeps == []


def test_a_provider_refusing_parameter_after_parameter_is_left() -> None:
    refusal = UnsupportedParameter("refused", "temperature")
    first, second = scripted(refusal), scripted(answer("second"))
    chain = Executor({"first": first, "second": second}, ["first:m1", "second:m2"])
    result = chain.run()
    assert result.provider == "second"
    assert len(first.calls) == 4  # the first call and three tries without a refused parameter


def test_a_content_filter_moves_on_when_the_chain_says_so() -> None:
    first, second = scripted(ContentRejected("first refused")), scripted(answer("second"))
    chain = Executor({"first": first, "second": second}, ["first:m1", "second:m2"], on_content_filter={"chat": "next"})
    result = chain.run()
    assert outcomes(result) == [("first", "permanent_error"), ("second", "ok")]


def test_a_missed_first_token_moves_on_without_retrying_the_provider() -> None:
    first, second = scripted(FirstTokenTimeout("no first byte")), scripted(answer("second"))
    chain = Executor({"first": first, "second": second}, ["first:m1", "second:m2"], retry=retry_settings())
    result = chain.run()
    assert outcomes(result) == [("first", "retryable_error"), ("second", "ok")]
    assert first.calls == ["m1"] and chain.sleeps == []


def test_a_cancelled_call_ends_the_chain_with_its_attempts() -> None:
    first, second = scripted(Unavailable("503")), scripted(Cancelled("cut"))
    chain = Executor({"first": first, "second": second}, ["first:m1", "second:m2"], retry=retry_settings())
    with pytest.raises(Cancelled) as raised:
        chain.run()
    assert [a["outcome"] for a in raised.value.attempts] == ["retryable_error", "retryable_error", "cancelled"]


def test_a_cancelled_scope_starts_no_attempt() -> None:
    first = scripted(answer("never"))
    scope = TaskScope("t")
    scope.cancel("revoked")
    with pytest.raises(Cancelled, match="revoked"):
        Executor({"first": first}, ["first:m1"]).run(scope)
    assert first.calls == []


def test_a_spent_deadline_starts_no_attempt() -> None:
    first = scripted(answer("never"))
    with pytest.raises(DeadlineExceeded, match="deadline_s was spent after 0 attempt"):
        Executor({"first": first}, ["first:m1"]).run(TaskScope(deadline_at=time.monotonic() - 1))
    assert first.calls == []


def test_no_backoff_wait_runs_past_the_deadline() -> None:
    first, second = scripted(Unavailable("503", 3.0)), scripted(answer("second"))
    retry = retry_settings(max_inline_wait_s=10.0)
    chain = Executor({"first": first, "second": second}, ["first:m1", "second:m2"], retry=retry)
    assert chain.run().provider == "second" and chain.sleeps == [3.0]  # Retry-After waited inline
    result = chain.run(TaskScope(deadline_at=time.monotonic() + 0.5))  # but not past the deadline
    assert result.provider == "second"
    assert chain.sleeps == [3.0]


def test_a_provider_too_slow_for_the_deadline_left_is_skipped() -> None:
    class Slow(Scripted):
        steps = (answer("slow"),)
        calls: ClassVar[list[str]] = []

        def complete(self, request: ChatRequest, model: str) -> Reply[ChatOutput]:
            time.sleep(0.3)
            return super().complete(request, model)

    fast = scripted(answer("fast"))
    providers: dict[str, type[Provider]] = {"slow": Slow, "fast": fast}
    chain = Executor(providers, ["slow:m", "fast:m"])
    assert chain.run().provider == "slow"  # learns how long slow takes
    result = chain.run(TaskScope(deadline_at=time.monotonic() + 0.1))
    assert result.provider == "fast"
    assert outcomes(result) == [("slow", "skipped"), ("fast", "ok")]
    assert "usually answers in" in str(result.attempts[0].error)


# --- the first call's admission, asked ahead with the cache probe ------------------------------------------------


def test_the_first_call_is_admitted_ahead_only_when_it_is_certain(redis_client: redis.Redis) -> None:
    family = FAMILIES["chat"]
    providers: dict[str, type[Provider]] = {"first": scripted(answer("one")), "second": scripted(answer("two"))}
    chain = Executor(providers, ["first:m1", "second:m2"], guards=RedisGuardBackend(redis_client))
    plain = family.parse({"messages": [{"role": "user", "content": "hi"}]})
    ahead = chain.executor.ahead(family, plain)
    assert ahead is not None
    assert ahead.provider == "first"
    with_deadline = family.parse({"messages": [{"role": "user", "content": "hi"}], "deadline_s": 30})
    assert chain.executor.ahead(family, with_deadline) is None  # a slow first provider may be skipped for it
    unserved = family.parse({"messages": [{"role": "user", "content": "hi"}], "model": "nobody-serves-it"})
    assert chain.executor.ahead(family, unserved) is None  # the run says why
    spend_capped = {"first": {"budget": {"per_day": 5.0}}}
    capped = Executor(providers, ["first:m1"], specs=spend_capped, guards=RedisGuardBackend(redis_client))
    assert capped.executor.ahead(family, plain) is None  # a spent budget moves on without calling
    memory = Executor(providers, ["first:m1"])
    assert memory.executor.ahead(family, plain) is None


def test_a_run_makes_its_first_call_on_the_admission_asked_ahead(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    family = FAMILIES["chat"]
    first = scripted(answer("one"))
    chain = Executor({"first": first}, ["first:m1"], guards=RedisGuardBackend(redis_client))
    request = family.parse({"messages": [{"role": "user", "content": "hi"}], "temperature": 0})
    chain.executor.run(family, request)  # loads the scripts
    ahead = chain.executor.ahead(family, request)
    assert ahead is not None
    cache = ResultCache(redis_client, CacheSettings())
    assert cache.probe("entry", "task-1", 60.0, admitting=ahead).claimed
    sent = count_commands(redis_client, monkeypatch)
    result = chain.executor.run(family, request, ahead=ahead)
    chain.executor.release(ahead)
    assert result.provider == "first"
    assert "EVALSHA" not in sent  # no admission asked during the run
