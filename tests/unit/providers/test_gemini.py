"""The Gemini adapter against a fake that checks Google's documented request shape and answers in its format."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import requests

from stepper.errors import (
    AuthError,
    ContentRejected,
    RateLimited,
    TruncatedOutput,
    Unavailable,
    UnsupportedInput,
)
from stepper.providers.gemini import GeminiProvider
from stepper.providers.gemini_request import gemini_schema
from stepper.providers.llm.call import LlmAnswer, LlmCall
from stepper.samples import sample_requests
from stepper.schemas import ChatRequest, ReportRequest
from stepper.schemas.chat import JsonSchemaFormat, Message, ResponseFormat
from stepper.settings import ProviderSettings
from tests.support.fake_http import Fault, running, stream_cuts
from tests.support.streaming import Sink, streamed
from tests.support.vendors.gemini import FakeGemini

KEY = "AIzaSy-fake-gemini-key-0123456789"
MODEL = "gemini-2.0-flash"


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    yield from running(FakeGemini(KEY))  # type: ignore[misc]


@pytest.fixture
def provider(fake: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> GeminiProvider:
    monkeypatch.setenv("TEST_GEMINI_KEY", KEY)
    settings = ProviderSettings.model_validate(
        {
            "name": "gemini",
            "class": "stepper.providers.gemini:GeminiProvider",
            "base_url": fake.base_url,
            "api_key_env": "TEST_GEMINI_KEY",
            "first_token_timeout_s": 2,
        }
    )
    return GeminiProvider(settings)


def chat(content: str = "hello", **extra: object) -> ChatRequest:
    return ChatRequest.model_validate({"messages": [{"role": "user", "content": content}], **extra})


def report() -> ReportRequest:
    return ReportRequest.model_validate(sample_requests()["report"])


def test_chat_completion(provider: GeminiProvider, fake: FakeGemini) -> None:
    reply = provider.complete(chat("hello", temperature=0.2, max_tokens=50), MODEL)
    assert reply.output.message.content == "fake-gemini says: hello"
    assert reply.output.finish_reason == "stop"
    assert reply.usage["input_tokens"] >= 1 and reply.usage["output_tokens"] >= 1
    sent = fake.requests[0]
    assert sent.path == f"/v1beta/models/{MODEL}:generateContent"
    assert sent.json() == {
        "contents": [{"role": "user", "parts": [{"text": "hello"}]}],
        "generationConfig": {"maxOutputTokens": 50, "temperature": 0.2},
    }


def test_key_travels_in_the_header_never_in_the_url(provider: GeminiProvider, fake: FakeGemini) -> None:
    provider.complete(chat(), MODEL)
    sent = fake.requests[0]
    assert sent.headers["x-goog-api-key"] == KEY
    assert sent.query == {}
    assert "authorization" not in sent.headers


def test_system_messages_roles_and_turns(provider: GeminiProvider, fake: FakeGemini) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "system", "content": "Answer in English."},
        {"role": "user", "content": "Name a colour"},
        {"role": "user", "content": "and a fruit"},
    ]
    reply = provider.complete(ChatRequest.model_validate({"messages": messages}), MODEL)
    assert reply.output.message.content == "fake-gemini says: Name a colour and a fruit"
    sent = fake.requests[0].json()
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief.\n\nAnswer in English."}]}
    assert sent["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Hello."}]},
        {"role": "user", "parts": [{"text": "Name a colour"}, {"text": "and a fruit"}]},
    ]
    assert set(sent["generationConfig"]) == {"maxOutputTokens"}


def test_a_conversation_of_system_messages_only_is_unsupported(provider: GeminiProvider, fake: FakeGemini) -> None:
    with pytest.raises(UnsupportedInput):
        provider.complete(ChatRequest.model_validate({"messages": [{"role": "system", "content": "x"}]}), MODEL)
    assert fake.requests == []


def test_json_schema_becomes_gemini_response_schema(provider: GeminiProvider, fake: FakeGemini) -> None:
    schema = {
        "title": "Note",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "title": {"title": "Title", "type": "string", "minLength": 1},
            "tags": {"type": "array", "items": {"type": "string"}, "default": []},
            "impact": {"type": "string", "enum": ["low", "high"], "description": "how much"},
        },
        "required": ["title", "tags", "impact"],
    }
    fake.script.contents.append('{"title": "t", "tags": [], "impact": "low"}')
    response_format = ResponseFormat(type="json_schema", json_schema=JsonSchemaFormat(name="note", json_schema=schema))
    call = LlmCall(MODEL, [Message(role="user", content="note")], 100, 0.0, response_format)
    assert provider.send(call).text == '{"title": "t", "tags": [], "impact": "low"}'
    config = fake.requests[0].json()["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"] == {
        "type": "OBJECT",
        "properties": {
            "title": {"type": "STRING"},
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
            "impact": {"type": "STRING", "enum": ["low", "high"], "description": "how much"},
        },
        "required": ["title", "tags", "impact"],
        "propertyOrdering": ["title", "tags", "impact"],
    }
    assert gemini_schema(schema) == config["responseSchema"]


def test_report_uses_response_schema_and_validates(provider: GeminiProvider, fake: FakeGemini) -> None:
    reply = provider.generate_report(report(), MODEL)
    assert [change.path for change in reply.output.changes] == ["stepper/chain.py", "tests/test_chain.py"]
    sent = fake.requests[0].json()
    assert sent["generationConfig"]["responseMimeType"] == "application/json"
    assert sent["generationConfig"]["responseSchema"]["type"] == "OBJECT"
    assert sent["generationConfig"]["temperature"] == 1.0
    assert sent["generationConfig"]["maxOutputTokens"] == 4096
    assert "<message>" in sent["contents"][0]["parts"][0]["text"]
    assert "structured reports" in sent["systemInstruction"]["parts"][0]["text"]


def test_invalid_or_cut_off_report_is_retryable(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.script.contents.append(json.dumps({"title": "only a title"}))
    with pytest.raises(TruncatedOutput, match="invalid report"):
        provider.generate_report(report(), MODEL)
    fake.script.contents.append('{"title": "cut off", "summ')
    with pytest.raises(TruncatedOutput, match="not JSON"):
        provider.generate_report(report(), MODEL)
    fake.script.finish_reasons.append("MAX_TOKENS")
    with pytest.raises(TruncatedOutput, match="output tokens"):
        provider.generate_report(report(), MODEL)


def test_max_tokens_is_a_length_finish_for_chat(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.script.finish_reasons.append("MAX_TOKENS")
    assert provider.complete(chat(), MODEL).output.finish_reason == "length"


@pytest.mark.parametrize("reason", ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"])
def test_safety_finishes_are_content_rejected(provider: GeminiProvider, fake: FakeGemini, reason: str) -> None:
    fake.script.finish_reasons.append(reason)
    with pytest.raises(ContentRejected):
        provider.complete(chat(), MODEL)


@pytest.mark.parametrize("reason", ["OTHER", "MALFORMED_FUNCTION_CALL", "FINISH_REASON_UNSPECIFIED", "LANGUAGE"])
def test_other_finishes_are_truncated_output(provider: GeminiProvider, fake: FakeGemini, reason: str) -> None:
    fake.script.finish_reasons.append(reason)
    with pytest.raises(TruncatedOutput, match=reason):
        provider.complete(chat(), MODEL)


def test_blocked_prompt_is_content_rejected(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.block_reasons.append("SAFETY")
    with pytest.raises(ContentRejected, match="SAFETY"):
        provider.complete(chat(), MODEL)


def test_thought_parts_are_not_part_of_the_answer(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.thoughts.append("Let me think about greetings.")
    assert provider.complete(chat("hi"), MODEL).output.message.content == "fake-gemini says: hi"


def test_bad_key_is_auth_error_without_the_key(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.api_key = "another"
    with pytest.raises(AuthError, match="API key not valid") as caught:
        provider.complete(chat(), MODEL)
    assert KEY not in str(caught.value)


def test_suspended_key_is_auth_error_with_the_echoed_key_redacted(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.suspended = True
    with pytest.raises(AuthError, match="suspended") as caught:
        provider.complete(chat(), MODEL)
    assert KEY not in str(caught.value) and "[redacted]" in str(caught.value)


def test_unsupported_location_is_unsupported_input(provider: GeminiProvider, fake: FakeGemini) -> None:
    body = {"error": {"code": 400, "message": "User location is not supported.", "status": "FAILED_PRECONDITION"}}
    fake.inject(Fault(status=400, body=body))
    with pytest.raises(UnsupportedInput, match="location"):
        provider.complete(chat(), MODEL)


def test_429_carries_retry_after(provider: GeminiProvider, fake: FakeGemini) -> None:
    body = {"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}}
    fake.inject(Fault(status=429, body=body, headers={"Retry-After": "2"}))
    with pytest.raises(RateLimited) as caught:
        provider.complete(chat(), MODEL)
    assert caught.value.retry_after_s == 2.0


def test_429_retry_info_is_read_when_there_is_no_retry_after(provider: GeminiProvider, fake: FakeGemini) -> None:
    retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36.5s"}
    body = {"error": {"code": 429, "message": "You exceeded your current quota", "status": "RESOURCE_EXHAUSTED"}}
    body["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.Help", "links": []}, retry_info]
    fake.inject(Fault(status=429, body=body))
    with pytest.raises(RateLimited) as caught:
        provider.complete(chat(), MODEL)
    assert caught.value.retry_after_s == 36.5


def test_503_is_unavailable(provider: GeminiProvider, fake: FakeGemini) -> None:
    body = {
        "error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}
    }
    fake.inject(Fault(status=503, body=body))
    with pytest.raises(Unavailable, match="overloaded"):
        provider.complete(chat(), MODEL)


def test_streaming_relays_deltas_and_returns_the_whole_answer(provider: GeminiProvider, fake: FakeGemini) -> None:
    sink = Sink()
    fake.thoughts.append("Thinking first.")
    text = streamed(provider, chat("stream me please", stream=True), sink, MODEL)
    assert text == "fake-gemini says: stream me please"
    assert [event.type for event in sink.events] == ["delta"] * 5
    assert "".join(event.text for event in sink.events) == text
    sent = fake.requests[0]
    assert sent.path == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert sent.query == {"alt": ["sse"]}
    assert sent.headers["x-goog-api-key"] == KEY


def test_streaming_reports_the_final_usage(provider: GeminiProvider, fake: FakeGemini) -> None:
    call = LlmCall(MODEL, [Message(role="user", content="count my tokens")], 100)
    pieces = list(provider.send_streaming(call))
    answer = pieces[-1]
    assert isinstance(answer, LlmAnswer)
    assert answer.text == "".join(piece for piece in pieces[:-1] if isinstance(piece, str))
    assert answer.finish_reason == "stop"
    assert answer.usage["input_tokens"] >= 1 and answer.usage["output_tokens"] >= 1


@pytest.mark.parametrize(("fault", "expected"), stream_cuts(2, "finishReason"))
def test_stream_that_stops_midway_resets_and_raises(
    provider: GeminiProvider, fake: FakeGemini, fault: Fault, expected: str
) -> None:
    fake.inject(fault)
    sink = Sink()
    with pytest.raises(TruncatedOutput, match=expected):
        streamed(provider, chat("one two three four five six", stream=True), sink, MODEL)
    assert [event.type for event in sink.events] == ["delta", "delta", "reset"]


def test_streamed_block_and_safety_stop_are_content_rejected(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.block_reasons.append("PROHIBITED_CONTENT")
    with pytest.raises(ContentRejected, match="PROHIBITED_CONTENT"):
        streamed(provider, chat(stream=True), Sink())
    fake.script.finish_reasons.append("SAFETY")
    with pytest.raises(ContentRejected):
        streamed(provider, chat(stream=True), Sink())


def test_the_key_is_in_no_log_record(
    provider: GeminiProvider, fake: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    provider.complete(chat(), MODEL)
    streamed(provider, chat(stream=True), Sink())
    fake.suspended = True
    with pytest.raises(AuthError):
        provider.complete(chat(), MODEL)
    assert any(record.name.startswith("urllib3") for record in caplog.records)  # the URLs were logged
    assert all(KEY not in record.getMessage() for record in caplog.records)
    assert KEY not in caplog.text


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda url, body: (url + f"?key={KEY}", body), "x-goog-api-key header"),
        (lambda url, body: (url, {**body, "model": MODEL}), 'Unknown name "model"'),
        (lambda url, body: (url, {**body, "generationConfig": {"max_tokens": 5}}), 'Unknown name "max_tokens"'),
        (lambda url, body: (url, {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}), "valid role"),
        (lambda url, body: (url, {"contents": []}), "contents is not specified"),
        (lambda url, body: (url, {**body, "generationConfig": {"responseSchema": {"type": "STRING"}}}), "mime"),
    ],
)
def test_the_fake_refuses_what_google_refuses(fake: FakeGemini, change: object, expected: str) -> None:
    """The fake's checks are what the adapter's tests lean on, so they are tested too."""
    url = f"{fake.base_url}/models/{MODEL}:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    assert requests.post(url, json=body, headers={"x-goog-api-key": KEY}, timeout=5).status_code == 200
    url, body = change(url, body)  # type: ignore[operator]
    answer = requests.post(url, json=body, headers={"x-goog-api-key": KEY}, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert expected in answer.json()["error"]["message"]


def test_the_fake_refuses_a_schema_requiring_an_undefined_property(fake: FakeGemini) -> None:
    url = f"{fake.base_url}/models/{MODEL}:generateContent"
    schema = {"type": "OBJECT", "properties": {"summary": {"type": "STRING"}}, "required": ["title", "summary"]}
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"responseMimeType": "application/json", "responseSchema": schema},
    }
    answer = requests.post(url, json=body, headers={"x-goog-api-key": KEY}, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith(
        "* GenerateContentRequest.generation_config.response_schema.required[0]: property is not defined"
    )
