"""The Hugging Face Space adapter against a fake Gradio app speaking Gradio's two-step HTTP API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from stepper.errors import AuthError, RateLimited, TruncatedOutput, Unavailable, UnsupportedInput
from stepper.providers.hf_space import HfSpaceProvider
from stepper.providers.llm.call import LlmCall
from stepper.providers.llm.report_prompt import SYSTEM
from stepper.samples import sample_requests
from stepper.schemas import ChatRequest, ReportRequest
from stepper.schemas.chat import Message
from stepper.settings import ProviderSettings
from tests.support.fake_http import Fault, running, stream_cuts
from tests.support.streaming import Sink, streamed
from tests.support.vendors.hf_space import FakeHfSpace

TOKEN = "hf_fakeSpaceToken0123456789"
MODEL = "space"


@pytest.fixture
def fake() -> Iterator[FakeHfSpace]:
    yield from running(FakeHfSpace(TOKEN))  # type: ignore[misc]


def settings_for(fake: FakeHfSpace | None, **extra: Any) -> ProviderSettings:
    spec: dict[str, Any] = {
        "name": "hf_space",
        "class": "stepper.providers.hf_space:HfSpaceProvider",
        "api_key_env": "TEST_HF_TOKEN",
        "first_token_timeout_s": 2,
        **extra,
    }
    if fake is not None:
        spec["base_url"] = fake.base_url
    return ProviderSettings.model_validate(spec)


@pytest.fixture
def provider(fake: FakeHfSpace, monkeypatch: pytest.MonkeyPatch) -> HfSpaceProvider:
    monkeypatch.setenv("TEST_HF_TOKEN", TOKEN)
    return HfSpaceProvider(settings_for(fake))


def chat(content: str = "hello", **extra: object) -> ChatRequest:
    return ChatRequest.model_validate({"messages": [{"role": "user", "content": content}], **extra})


def report() -> ReportRequest:
    return ReportRequest.model_validate(sample_requests()["report"])


def test_chat_submits_then_reads_the_event_stream(provider: HfSpaceProvider, fake: FakeHfSpace) -> None:
    reply = provider.complete(chat("hello", temperature=0.2, max_tokens=50), MODEL)
    assert reply.output.message.content == "fake-space says: hello"
    assert reply.output.finish_reason == "stop"
    submit, results = fake.requests
    assert (submit.method, submit.path) == ("POST", "/gradio_api/call/chat")
    assert submit.json() == {"data": ["hello"]}
    assert (results.method, results.path) == ("GET", f"/gradio_api/call/chat/{fake.issued[0]}")
    assert submit.headers["authorization"] == results.headers["authorization"] == f"Bearer {TOKEN}"


def test_a_conversation_becomes_one_labelled_prompt(provider: HfSpaceProvider, fake: FakeHfSpace) -> None:
    turns = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "again"},
    ]
    reply = provider.complete(ChatRequest.model_validate({"messages": turns}), MODEL)
    assert reply.output.message.content == "fake-space says: again"
    assert fake.requests[0].json() == {"data": ["System: Be brief.\n\nUser: hi\n\nAssistant: hello\n\nUser: again"]}


def test_messages_input_api_name_and_extra_inputs(fake: FakeHfSpace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_HF_TOKEN", TOKEN)
    fake.api_name, fake.extra_inputs = "respond", 2
    options = {"input": "messages", "api_name": "/respond", "extra_inputs": ["Be brief.", 256]}
    provider = HfSpaceProvider(settings_for(fake, options=options))
    assert provider.complete(chat("hi"), MODEL).output.message.content == "fake-space says: hi"
    assert fake.requests[0].path == "/gradio_api/call/respond"
    assert fake.requests[0].json() == {"data": [[{"role": "user", "content": "hi"}], "Be brief.", 256]}


def test_a_public_space_needs_no_token(fake: FakeHfSpace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_HF_TOKEN", raising=False)
    fake.token = None
    settings = settings_for(fake)
    assert HfSpaceProvider.unavailable_reason(settings) is None
    assert HfSpaceProvider(settings).complete(chat(), MODEL).output.message.content == "fake-space says: hello"
    assert all("authorization" not in request.headers for request in fake.requests)


def test_missing_base_url_makes_the_space_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_HF_TOKEN", TOKEN)
    reason = HfSpaceProvider.unavailable_reason(settings_for(None))
    assert reason is not None
    assert "STEPPER_HF_SPACE_BASE_URL" in reason and "hf.space" in reason
    assert "input must be" in (
        HfSpaceProvider.unavailable_reason(settings_for(None, base_url="http://x", options={"input": "chat"})) or ""
    )


def test_report_is_prompted_and_validated_strictly(provider: HfSpaceProvider, fake: FakeHfSpace) -> None:
    reply = provider.generate_report(report(), MODEL)
    assert [change.path for change in reply.output.changes] == ["stepper/chain.py", "tests/test_chain.py"]
    (prompt,) = fake.requests[0].json()["data"]
    assert prompt.startswith(f"System: {SYSTEM}\n\nUser: ") and "<commit sha=" in prompt
    fake.script.contents.append(json.dumps({"title": "only a title"}))
    with pytest.raises(TruncatedOutput, match="invalid report"):
        provider.generate_report(report(), MODEL)


def test_error_event_is_unavailable_with_the_spaces_message(provider: HfSpaceProvider, fake: FakeHfSpace) -> None:
    fake.script.finish_reasons.append("error")
    with pytest.raises(Unavailable, match="CUDA out of memory"):
        provider.complete(chat(), MODEL)
    fake.show_error = False
    fake.script.finish_reasons.append("error")
    with pytest.raises(Unavailable, match="no details"):
        provider.complete(chat(), MODEL)


def test_a_stream_without_a_final_event_is_truncated(provider: HfSpaceProvider, fake: FakeHfSpace) -> None:
    fake.script.finish_reasons.append("none")
    with pytest.raises(TruncatedOutput, match="without complete or error"):
        provider.complete(chat(), MODEL)


def test_a_space_whose_first_output_is_not_text_is_unsupported(provider: HfSpaceProvider, fake: FakeHfSpace) -> None:
    fake.final_outputs = [{"path": "/tmp/gradio/image.webp", "meta": {"_type": "gradio.FileData"}}]
    with pytest.raises(UnsupportedInput, match="not text"):
        provider.complete(chat(), MODEL)


def test_wrong_token_is_auth_error_without_the_token(provider: HfSpaceProvider, fake: FakeHfSpace) -> None:
    fake.token = "hf_another"
    with pytest.raises(AuthError) as caught:
        provider.complete(chat(), MODEL)
    assert TOKEN not in str(caught.value)


def test_429_carries_retry_after(provider: HfSpaceProvider, fake: FakeHfSpace) -> None:
    fake.inject(Fault(status=429, body={"error": "Too many requests"}, headers={"Retry-After": "3"}))
    with pytest.raises(RateLimited) as caught:
        provider.complete(chat(), MODEL)
    assert caught.value.retry_after_s == 3.0


def test_a_sleeping_or_full_space_is_unavailable(provider: HfSpaceProvider, fake: FakeHfSpace) -> None:
    fake.inject(Fault(status=503, body={"detail": "Queue is full."}))
    with pytest.raises(Unavailable, match="Queue is full"):
        provider.complete(chat(), MODEL)


def test_streaming_relays_deltas_and_returns_the_whole_answer(provider: HfSpaceProvider, fake: FakeHfSpace) -> None:
    sink = Sink()
    text = streamed(provider, chat("stream me please", stream=True), sink)
    assert text == "fake-space says: stream me please"
    assert len(sink.events) > 2 and {event.type for event in sink.events} == {"delta"}
    assert "".join(event.text for event in sink.events) == text


def test_a_typing_cursor_never_reaches_the_deltas(provider: HfSpaceProvider, fake: FakeHfSpace) -> None:
    fake.cursor = "▌"
    call = LlmCall(MODEL, [Message(role="user", content="one two three")], 100)
    pieces = list(provider.send_streaming(call))
    deltas = [piece for piece in pieces if isinstance(piece, str)]
    assert "".join(deltas) == "fake-space says: one two three" and not any("▌" in delta for delta in deltas)
    assert not isinstance(pieces[-1], str) and pieces[-1].text == "fake-space says: one two three"


@pytest.mark.parametrize(("fault", "expected"), stream_cuts(4, "without complete or error"))
def test_stream_that_stops_midway_resets_and_raises(
    provider: HfSpaceProvider, fake: FakeHfSpace, fault: Fault, expected: str
) -> None:
    fake.inject(Fault(), fault)  # the submit goes through; the results stop after 3 texts
    sink = Sink()
    with pytest.raises(TruncatedOutput, match=expected):
        streamed(provider, chat("one two three four five six", stream=True), sink)
    assert [event.type for event in sink.events] == ["delta", "delta", "reset"]
