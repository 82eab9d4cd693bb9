"""The Cohere adapter against a fake that checks Cohere's documented v2 request shape and answers in its format."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from stepper.errors import AuthError, RateLimited, TruncatedOutput, Unavailable
from stepper.providers.cohere import CohereProvider
from stepper.providers.llm.call import LlmAnswer, LlmCall
from stepper.providers.llm.report_prompt import report_schema
from stepper.samples import sample_requests
from stepper.schemas import ChatRequest, ReportRequest
from stepper.schemas.chat import Message
from stepper.settings import ProviderSettings
from tests.support.fake_http import Fault, running, stream_cuts
from tests.support.streaming import Sink, streamed
from tests.support.vendors.cohere import FakeCohere

KEY = "co-fake-cohere-key-0123456789"
MODEL = "command-r-plus-08-2024"


@pytest.fixture
def fake() -> Iterator[FakeCohere]:
    yield from running(FakeCohere(KEY))  # type: ignore[misc]


@pytest.fixture
def provider(fake: FakeCohere, monkeypatch: pytest.MonkeyPatch) -> CohereProvider:
    monkeypatch.setenv("TEST_COHERE_KEY", KEY)
    settings = ProviderSettings.model_validate(
        {
            "name": "cohere",
            "class": "stepper.providers.cohere:CohereProvider",
            "base_url": fake.base_url,
            "api_key_env": "TEST_COHERE_KEY",
            "first_token_timeout_s": 2,
        }
    )
    return CohereProvider(settings)


def chat(content: str = "hello", **extra: object) -> ChatRequest:
    return ChatRequest.model_validate({"messages": [{"role": "user", "content": content}], **extra})


def report() -> ReportRequest:
    return ReportRequest.model_validate(sample_requests()["report"])


def test_chat_completion(provider: CohereProvider, fake: FakeCohere) -> None:
    reply = provider.complete(chat("hello", temperature=0.2, max_tokens=50), MODEL)
    assert reply.output.message.content == "fake-cohere says: hello"
    assert reply.output.finish_reason == "stop"
    assert reply.usage["input_tokens"] >= 180 and "output_tokens" in reply.usage  # usage.tokens, not billed_units
    request = fake.requests[0]
    assert request.path == "/v2/chat"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.json() == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 50,
        "temperature": 0.2,
        "stream": False,
    }


def test_system_and_assistant_turns_keep_their_roles(provider: CohereProvider, fake: FakeCohere) -> None:
    turns = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "again"},
    ]
    reply = provider.complete(ChatRequest.model_validate({"messages": turns}), MODEL)
    assert reply.output.message.content == "fake-cohere says: again"
    assert fake.requests[0].json()["messages"] == turns


def test_thinking_items_are_not_part_of_the_answer(provider: CohereProvider, fake: FakeCohere) -> None:
    fake.thinking = "Let me think."
    assert provider.complete(chat(), MODEL).output.message.content == "fake-cohere says: hello"
    assert streamed(provider, chat(stream=True), Sink()) == "fake-cohere says: hello"


def test_report_uses_a_json_object_response_format_with_the_schema(provider: CohereProvider, fake: FakeCohere) -> None:
    reply = provider.generate_report(report(), MODEL)
    assert [change.path for change in reply.output.changes] == ["stepper/chain.py", "tests/test_chain.py"]
    sent = fake.requests[0].json()
    assert sent["response_format"] == {"type": "json_object", "json_schema": report_schema()}
    assert sent["temperature"] == 1.0 and sent["max_tokens"] == 4096
    assert [message["role"] for message in sent["messages"]] == ["system", "user"]
    assert "<message>" in sent["messages"][1]["content"]


def test_invalid_or_cut_off_report_is_retryable(provider: CohereProvider, fake: FakeCohere) -> None:
    fake.script.contents.append(json.dumps({"title": "only a title"}))
    with pytest.raises(TruncatedOutput, match="invalid report"):
        provider.generate_report(report(), MODEL)
    fake.script.finish_reasons.append("MAX_TOKENS")
    with pytest.raises(TruncatedOutput, match="output tokens"):
        provider.generate_report(report(), MODEL)


def test_max_tokens_is_a_length_finish_for_chat(provider: CohereProvider, fake: FakeCohere) -> None:
    fake.script.finish_reasons.extend(["MAX_TOKENS", "STOP_SEQUENCE"])
    assert provider.complete(chat(), MODEL).output.finish_reason == "length"
    assert provider.complete(chat(), MODEL).output.finish_reason == "stop"


@pytest.mark.parametrize("reason", ["ERROR", "TIMEOUT"])
def test_finishes_without_an_answer_are_truncated_output(
    provider: CohereProvider, fake: FakeCohere, reason: str
) -> None:
    fake.script.finish_reasons.append(reason)
    with pytest.raises(TruncatedOutput, match=reason):
        provider.complete(chat(), MODEL)


def test_a_finish_stepper_does_not_know_serves_the_answer_and_is_logged_once(
    provider: CohereProvider, fake: FakeCohere, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script.finish_reasons.extend(["SOMETHING_NEW", "SOMETHING_NEW"])
    with caplog.at_level("WARNING"):
        first, second = provider.complete(chat(), MODEL), provider.complete(chat(), MODEL)
    assert first.output.finish_reason == second.output.finish_reason == "stop"
    assert first.output.message.content
    assert sum("'SOMETHING_NEW'" in record.getMessage() for record in caplog.records) == 1


def test_wrong_key_is_auth_error_without_the_key(provider: CohereProvider, fake: FakeCohere) -> None:
    fake.api_key = "another"
    with pytest.raises(AuthError, match="invalid api token") as caught:
        provider.complete(chat(), MODEL)
    assert KEY not in str(caught.value)


@pytest.mark.parametrize("status", [402, 498])
def test_billing_and_invalid_token_statuses_are_auth_errors(
    provider: CohereProvider, fake: FakeCohere, status: int
) -> None:
    fake.inject(Fault(status=status, body={"message": f"token {KEY} cannot be used"}))
    with pytest.raises(AuthError) as caught:
        provider.complete(chat(), MODEL)
    assert KEY not in str(caught.value) and "[redacted]" in str(caught.value)


def test_429_carries_retry_after(provider: CohereProvider, fake: FakeCohere) -> None:
    fake.inject(Fault(status=429, body={"message": "You are using a Trial key"}, headers={"Retry-After": "2"}))
    with pytest.raises(RateLimited, match="Trial key") as caught:
        provider.complete(chat(), MODEL)
    assert caught.value.retry_after_s == 2.0


@pytest.mark.parametrize("status", [499, 503])
def test_cancelled_and_503_are_unavailable(provider: CohereProvider, fake: FakeCohere, status: int) -> None:
    fake.inject(Fault(status=status, body={"message": "service unavailable"}))
    with pytest.raises(Unavailable, match="service unavailable"):
        provider.complete(chat(), MODEL)


def test_streaming_relays_deltas_and_returns_the_whole_answer(provider: CohereProvider, fake: FakeCohere) -> None:
    sink = Sink()
    text = streamed(provider, chat("stream me please", stream=True), sink)
    assert text == "fake-cohere says: stream me please"
    assert [event.type for event in sink.events] == ["delta"] * 5
    assert "".join(event.text for event in sink.events) == text
    assert fake.requests[0].json()["stream"] is True


def test_streaming_reports_the_final_usage_and_finish(provider: CohereProvider, fake: FakeCohere) -> None:
    fake.script.finish_reasons.append("MAX_TOKENS")
    pieces = list(provider.send_streaming(LlmCall(MODEL, [Message(role="user", content="count my tokens")], 100)))
    answer = pieces[-1]
    assert isinstance(answer, LlmAnswer)
    assert answer.text == "".join(piece for piece in pieces[:-1] if isinstance(piece, str))
    assert answer.finish_reason == "length"
    assert answer.usage["input_tokens"] >= 180 and answer.usage["output_tokens"] >= 1


def test_a_streamed_error_finish_is_truncated_output_with_its_reason(
    provider: CohereProvider, fake: FakeCohere
) -> None:
    fake.script.finish_reasons.append("ERROR")
    sink = Sink()
    with pytest.raises(TruncatedOutput, match="internal error during generation"):
        streamed(provider, chat("one two three", stream=True), sink)
    assert sink.events[-1].type == "reset"


# After message-start, content-start and two content-deltas.
@pytest.mark.parametrize(("fault", "expected"), stream_cuts(4, "message-end"))
def test_stream_that_stops_midway_resets_and_raises(
    provider: CohereProvider, fake: FakeCohere, fault: Fault, expected: str
) -> None:
    fake.inject(fault)
    sink = Sink()
    with pytest.raises(TruncatedOutput, match=expected):
        streamed(provider, chat("one two three four five six", stream=True), sink)
    assert [event.type for event in sink.events] == ["delta", "delta", "reset"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"stream_options": {"include_usage": True}}, "stream_options is not a valid field"),
        ({"messages": [{"role": "developer", "content": "hi"}]}, "messages[0].role"),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "response_format.type"),
        ({"response_format": {"type": "text", "json_schema": {}}}, "does not accept json_schema"),
        ({"temperature": -1}, "temperature"),
    ],
)
def test_the_fake_refuses_what_cohere_refuses(fake: FakeCohere, change: dict[str, object], expected: str) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **change}
    answer = requests.post(f"{fake.url}/v2/chat", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
    assert answer.status_code == 400
    assert expected in answer.json()["message"]
