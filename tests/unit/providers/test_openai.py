"""The OpenAI-compatible adapter against a fake that checks OpenAI's documented request shape."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from stepper.errors import AuthError, ContentRejected, RateLimited, TruncatedOutput
from stepper.infra.streams import current_sink
from stepper.providers.openai import OpenAIProvider
from stepper.samples import sample_requests
from stepper.schemas import ChatRequest, ReportRequest
from stepper.settings import ProviderSettings
from tests.support.fake_http import Fault, running
from tests.support.streaming import Sink
from tests.support.vendors.openai import FakeOpenAI

KEY = "sk-fake-openai-key-123"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    yield from running(FakeOpenAI(KEY))  # type: ignore[misc]


@pytest.fixture
def provider(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> OpenAIProvider:
    monkeypatch.setenv("TEST_OPENAI_KEY", KEY)
    settings = ProviderSettings.model_validate(
        {
            "name": "openai",
            "class": "stepper.providers.openai:OpenAIProvider",
            "base_url": fake.base_url,
            "api_key_env": "TEST_OPENAI_KEY",
            "first_token_timeout_s": 2,
        }
    )
    return OpenAIProvider(settings)


def chat(content: str = "hello", **extra: object) -> ChatRequest:
    return ChatRequest.model_validate({"messages": [{"role": "user", "content": content}], **extra})


def test_chat_completion(provider: OpenAIProvider, fake: FakeOpenAI) -> None:
    reply = provider.complete(chat("hello", temperature=0.2, max_tokens=50), "gpt-4o-mini")
    assert reply.output.message.content == "fake-openai says: hello"
    assert reply.output.finish_reason == "stop"
    assert reply.usage["input_tokens"] >= 1 and "output_tokens" in reply.usage
    sent = fake.requests[0].json()
    assert sent == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 50,
        "temperature": 0.2,
    }


def test_length_finish_is_reported_for_chat(provider: OpenAIProvider, fake: FakeOpenAI) -> None:
    fake.script.finish_reasons.append("length")
    assert provider.complete(chat(), "m").output.finish_reason == "length"


def test_content_filter_is_content_rejected(provider: OpenAIProvider, fake: FakeOpenAI) -> None:
    fake.script.finish_reasons.append("content_filter")
    with pytest.raises(ContentRejected):
        provider.complete(chat(), "m")


def test_report_uses_a_strict_json_schema_and_validates(provider: OpenAIProvider, fake: FakeOpenAI) -> None:
    request = ReportRequest.model_validate(sample_requests()["report"])
    reply = provider.generate_report(request, "gpt-4o-mini")
    assert [change.path for change in reply.output.changes] == ["stepper/chain.py", "tests/test_chain.py"]
    sent = fake.requests[0].json()
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["strict"] is True
    assert sent["temperature"] == 1.0 and sent["max_tokens"] == 4096
    assert "<message>" in sent["messages"][1]["content"]


def test_invalid_or_cut_off_report_is_retryable(provider: OpenAIProvider, fake: FakeOpenAI) -> None:
    request = ReportRequest.model_validate(sample_requests()["report"])
    fake.script.contents.append(json.dumps({"title": "only a title"}))
    with pytest.raises(TruncatedOutput, match="invalid report"):
        provider.generate_report(request, "m")
    fake.script.finish_reasons.append("length")
    with pytest.raises(TruncatedOutput, match="output tokens"):
        provider.generate_report(request, "m")


def test_wrong_key_is_auth_error_without_the_key(provider: OpenAIProvider, fake: FakeOpenAI) -> None:
    fake.api_key = "another"
    with pytest.raises(AuthError) as caught:
        provider.complete(chat(), "m")
    assert KEY not in str(caught.value)


def test_429_carries_retry_after(provider: OpenAIProvider, fake: FakeOpenAI) -> None:
    fake.inject(Fault(status=429, body={"error": {"message": "Rate limit reached"}}, headers={"Retry-After": "2"}))
    with pytest.raises(RateLimited) as caught:
        provider.complete(chat(), "m")
    assert caught.value.retry_after_s == 2.0


def test_streaming_relays_deltas_and_returns_the_whole_answer(provider: OpenAIProvider, fake: FakeOpenAI) -> None:
    sink = Sink()
    token = current_sink.set(sink)
    try:
        reply = provider.complete(chat("stream me please", stream=True), "m")
    finally:
        current_sink.reset(token)
    assert "".join(e.text for e in sink.events if e.type == "delta") == reply.output.message.content
    assert len(sink.events) > 2
    assert fake.requests[0].json()["stream_options"] == {"include_usage": True}
    assert reply.usage["output_tokens"] >= 1


def test_streamed_chats_one_after_another_share_one_kept_alive_connection(
    provider: OpenAIProvider, fake: FakeOpenAI
) -> None:
    token = current_sink.set(Sink())
    try:
        for content in ("first stream", "second stream"):
            provider.complete(chat(content, stream=True), "m")
        provider.complete(chat("then a plain one"), "m")
    finally:
        current_sink.reset(token)
    assert len(fake.requests) == 3
    assert len({request.peer for request in fake.requests}) == 1  # no handshake before each streamed first token


def test_stream_that_stops_midway_resets_and_raises(provider: OpenAIProvider, fake: FakeOpenAI) -> None:
    fake.inject(Fault(stop_stream_after=3))
    sink = Sink()
    token = current_sink.set(sink)
    try:
        with pytest.raises(TruncatedOutput):
            provider.complete(chat("one two three four five six", stream=True), "m")
    finally:
        current_sink.reset(token)
    assert [event.type for event in sink.events][-1] == "reset"
    assert any(event.type == "delta" for event in sink.events)
