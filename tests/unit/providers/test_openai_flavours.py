"""The OpenAI-compatible adapter against each server family's own answers: vLLM, TGI, llama.cpp's server,
Ollama, LiteLLM and OpenAI (see tests/support/vendors/openai_compatible.py for where each shape comes from)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import get_args

import pytest

from stepper.errors import ContextOverflow, TruncatedOutput, Unavailable, UnsupportedInput, UnsupportedParameter
from stepper.infra.capabilities import MemoryCapabilities
from stepper.providers.openai import OpenAIProvider
from stepper.schemas import ChatRequest
from stepper.settings import ProviderSettings
from tests.support.fake_http import running, serving
from tests.support.streaming import Sink, streamed
from tests.support.vendors.openai_compatible import FakeOpenAICompatible, Flavour

FLAVOURS: tuple[Flavour, ...] = get_args(Flavour)


@pytest.fixture(params=FLAVOURS)
def fake(request: pytest.FixtureRequest) -> Iterator[FakeOpenAICompatible]:
    yield from running(FakeOpenAICompatible(request.param, context_tokens=100))  # type: ignore[misc]


def provider_for(fake: FakeOpenAICompatible) -> OpenAIProvider:
    spec = {"name": fake.flavour, "class": "x.y:Z", "base_url": fake.base_url, "first_token_timeout_s": 5}
    return OpenAIProvider(ProviderSettings.model_validate(spec))


def chat(content: str = "hello there", **extra: object) -> ChatRequest:
    return ChatRequest.model_validate({"messages": [{"role": "user", "content": content}], **extra})


def test_a_plain_answer_in_every_servers_shape(fake: FakeOpenAICompatible, memory: MemoryCapabilities) -> None:
    reply = provider_for(fake).complete(chat(), "m")
    assert reply.output.message.content == f"{fake.flavour} says: hello there"
    assert reply.output.finish_reason == "stop"
    assert reply.usage["input_tokens"] >= 1


def test_a_stream_in_every_servers_shape_with_keepalives(
    fake: FakeOpenAICompatible, memory: MemoryCapabilities
) -> None:
    fake.keepalive_comments = 2
    sink = Sink()
    text = streamed(provider_for(fake), chat(stream=True), sink, "m")
    assert text == f"{fake.flavour} says: hello there"
    assert "".join(event.text for event in sink.events if event.type == "delta") == text
    assert [event.type for event in sink.events if event.type != "delta"] == []


def test_a_length_finish_in_every_servers_spelling(fake: FakeOpenAICompatible, memory: MemoryCapabilities) -> None:
    fake.finish_reason = "length"
    assert provider_for(fake).complete(chat(stream=True), "m").output.finish_reason == "length"


def test_a_context_overflow_in_every_servers_words(fake: FakeOpenAICompatible, memory: MemoryCapabilities) -> None:
    for stream in (False, True):
        with pytest.raises(ContextOverflow):
            provider_for(fake).complete(chat("x" * 600, stream=stream), "m")


def test_a_failure_midway_through_a_stream_is_never_a_whole_answer(
    fake: FakeOpenAICompatible, memory: MemoryCapabilities
) -> None:
    fake.stream_error_after = 2
    sink = Sink()
    # vLLM, TGI, llama.cpp and LiteLLM send an error event; Ollama's loses its words and the stream just stops.
    with pytest.raises((Unavailable, UnsupportedInput, TruncatedOutput, ContextOverflow)) as raised:
        streamed(provider_for(fake), chat(stream=True), sink, "m")
    assert sink.events[-1].type == "reset"  # the text already relayed is taken back
    assert not isinstance(raised.value, ContextOverflow)


def test_a_strict_servers_refusal_is_remembered_and_the_parameter_left_out(memory: MemoryCapabilities) -> None:
    with serving(FakeOpenAICompatible("vllm", strict=True)) as fake:
        provider = provider_for(fake)
        with pytest.raises(UnsupportedParameter) as raised:
            streamed(provider, chat(stream=True), Sink(), "m")
        assert raised.value.param == "stream_options"
        assert "body.stream_options: Extra inputs are not permitted" in str(raised.value)
        assert memory.refused("vllm", "m") == {"stream_options"}
        assert streamed(provider, chat(stream=True), Sink(), "m") == "vllm says: hello there"
        assert "stream_options" not in fake.requests[-1].json()
        assert memory.refused("vllm", "other-model") == frozenset()  # per model


def test_a_required_parameter_refused_moves_on_instead(memory: MemoryCapabilities) -> None:
    with serving(FakeOpenAICompatible("vllm", strict=True)) as fake:
        fake.allowed_fields.discard("messages")
        with pytest.raises(UnsupportedInput) as raised:
            provider_for(fake).complete(chat(), "m")
        assert not isinstance(raised.value, UnsupportedParameter)
        assert memory.refused("vllm", "m") == frozenset()


def test_a_reasoning_models_refused_max_tokens_switches_to_max_completion_tokens(memory: MemoryCapabilities) -> None:
    with serving(FakeOpenAICompatible("openai")) as fake:
        fake.next_errors.append(
            (
                400,
                {
                    "error": {
                        "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                        "Use 'max_completion_tokens' instead.",
                        "type": "invalid_request_error",
                        "param": "max_tokens",
                        "code": "unsupported_parameter",
                    }
                },
            )
        )
        provider = provider_for(fake)
        with pytest.raises(UnsupportedParameter):
            provider.complete(chat(max_tokens=20), "o3-mini")
        provider.complete(chat(max_tokens=20), "o3-mini")
        sent = fake.requests[-1].json()
        assert sent["max_completion_tokens"] == 20 and "max_tokens" not in sent
