"""Tools, response formats and sampling fields through each LLM adapter, against fakes that check each vendor's
wire format and answer tool calls in its own shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from stepper.errors import UnsupportedInput, UnsupportedParameter
from stepper.infra.capabilities import MemoryCapabilities
from stepper.infra.streams import current_sink
from stepper.providers.cohere import CohereProvider
from stepper.providers.gemini import GeminiProvider
from stepper.providers.hf_space import HfSpaceProvider
from stepper.providers.llm.base import LlmProvider
from stepper.providers.openai import OpenAIProvider
from stepper.schemas import ChatOutput, ChatRequest
from stepper.settings import ProviderSettings
from tests.support.fake_http import FakeServer, Fault
from tests.support.streaming import Sink
from tests.support.vendors.cohere import FakeCohere
from tests.support.vendors.gemini import SIGNATURE, FakeGemini
from tests.support.vendors.openai import FakeOpenAI

KEY = "test-key-0123456789"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


@dataclass
class Vendor:
    name: str
    fake: FakeServer
    provider: LlmProvider

    def sent(self, index: int = -1) -> dict[str, Any]:
        body: dict[str, Any] = self.fake.requests[index].json()
        return body


def _settings(name: str, cls: str, base_url: str) -> ProviderSettings:
    return ProviderSettings.model_validate(
        {"name": name, "class": cls, "base_url": base_url, "api_key_env": "TEST_VENDOR_KEY", "first_token_timeout_s": 2}
    )


@pytest.fixture(params=["openai", "gemini", "cohere"])
def vendor(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, memory: MemoryCapabilities
) -> Iterator[Vendor]:
    monkeypatch.setenv("TEST_VENDOR_KEY", KEY)
    name: str = request.param
    fake: FakeServer
    if name == "openai":
        fake = FakeOpenAI(KEY)
        fake.start()
        provider: LlmProvider = OpenAIProvider(
            _settings(name, "stepper.providers.openai:OpenAIProvider", f"{fake.url}/v1")
        )
    elif name == "gemini":
        fake = FakeGemini(KEY)
        fake.start()
        provider = GeminiProvider(_settings(name, "stepper.providers.gemini:GeminiProvider", f"{fake.url}/v1beta"))
    else:
        fake = FakeCohere(KEY)
        fake.start()
        provider = CohereProvider(_settings(name, "stepper.providers.cohere:CohereProvider", fake.url))
    yield Vendor(name, fake, provider)
    fake.stop()


def chat(messages: list[dict[str, Any]] | None = None, **extra: Any) -> ChatRequest:
    messages = messages or [{"role": "user", "content": "What is the weather in Paris?"}]
    return ChatRequest.model_validate({"messages": messages, **extra})


def test_a_tool_call_comes_back_in_openais_shape(vendor: Vendor) -> None:
    reply = vendor.provider.complete(chat(tools=[WEATHER]), "m")
    output = reply.output
    assert output.finish_reason == "tool_calls" and output.message.content is None
    [call] = output.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    assert json.loads(call.function.arguments) == {"city": "city value", "unit": "unit value"}


def test_tools_travel_in_each_vendors_shape(vendor: Vendor) -> None:
    vendor.provider.complete(chat(tools=[WEATHER, TIME], tool_choice="required"), "m")
    sent = vendor.sent()
    if vendor.name == "openai":
        assert sent["tools"] == [WEATHER, TIME] and sent["tool_choice"] == "required"
    elif vendor.name == "gemini":
        [declarations] = sent["tools"]
        weather, time = declarations["functionDeclarations"]
        assert weather["name"] == "get_weather" and weather["description"] == "The weather in a city"
        assert weather["parameters"]["type"] == "OBJECT" and "additionalProperties" not in weather["parameters"]
        assert weather["parameters"]["required"] == ["city"]
        assert time == {"name": "get_time"}  # Gemini refuses an OBJECT without properties
        assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    else:
        assert sent["tools"] == [WEATHER, TIME] and sent["tool_choice"] == "REQUIRED"


def test_a_named_tool_choice_forces_that_function(vendor: Vendor) -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    reply = vendor.provider.complete(chat(tools=[WEATHER, TIME], tool_choice=choice), "m")
    assert [call.function.name for call in reply.output.message.tool_calls or []] == ["get_time"]
    sent = vendor.sent()
    if vendor.name == "gemini":
        config = {"mode": "ANY", "allowedFunctionNames": ["get_time"]}
        assert sent["toolConfig"] == {"functionCallingConfig": config}
    elif vendor.name == "cohere":  # no named choice in v2: only that tool is declared, and it is required
        assert [tool["function"]["name"] for tool in sent["tools"]] == ["get_time"]
        assert sent["tool_choice"] == "REQUIRED"


def test_tool_choice_none_answers_in_words(vendor: Vendor) -> None:
    reply = vendor.provider.complete(chat(tools=[WEATHER], tool_choice="none"), "m")
    assert reply.output.finish_reason == "stop" and reply.output.message.tool_calls is None
    assert "Paris" in (reply.output.message.content or "")


def test_a_tool_result_goes_back_and_is_answered(vendor: Vendor) -> None:
    first = vendor.provider.complete(chat(tools=[WEATHER]), "m").output.message
    [call] = first.tool_calls or []
    conversation = [
        {"role": "user", "content": "What is the weather in Paris?"},
        first.model_dump(),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 21}'},
    ]
    reply = vendor.provider.complete(chat(conversation, tools=[WEATHER]), "m")
    assert reply.output.finish_reason == "stop" and "21" in (reply.output.message.content or "")
    sent = vendor.sent()
    wire_call = call.model_dump(exclude={"extra_content"})
    if vendor.name == "openai":
        assert sent["messages"][1] == {"role": "assistant", "content": None, "tool_calls": [wire_call]}
        assert sent["messages"][2] == {"role": "tool", "content": '{"temperature_c": 21}', "tool_call_id": call.id}
    elif vendor.name == "gemini":
        model_turn, result_turn = sent["contents"][1:]
        function_call = {"name": "get_weather", "args": json.loads(call.function.arguments)}
        assert model_turn == {
            "role": "model",
            "parts": [{"functionCall": function_call, "thoughtSignature": SIGNATURE}],
        }
        assert result_turn == {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"temperature_c": 21}}}],
        }
    else:
        assert sent["messages"][1] == {"role": "assistant", "tool_calls": [wire_call]}
        assert sent["messages"][2] == {"role": "tool", "content": '{"temperature_c": 21}', "tool_call_id": call.id}


def streamed_output(provider: LlmProvider, request: ChatRequest) -> tuple[ChatOutput, Sink]:
    sink = Sink()
    token = current_sink.set(sink)
    try:
        return provider.complete(request, "m").output, sink
    finally:
        current_sink.reset(token)


def test_a_streamed_tool_call_arrives_in_fragments_that_add_up(vendor: Vendor) -> None:
    output, sink = streamed_output(vendor.provider, chat(tools=[WEATHER], stream=True))
    fragments = [json.loads(event.text) for event in sink.events if event.type == "tool_call"]
    assert fragments and {fragment["index"] for fragment in fragments} == {0}
    [call] = output.message.tool_calls or []
    assert [f["id"] for f in fragments if f["id"]] == [call.id]
    assert [f["name"] for f in fragments if f["name"]] == ["get_weather"]
    assert "".join(fragment["arguments"] for fragment in fragments) == call.function.arguments
    assert output.finish_reason == "tool_calls"
    assert not [event for event in sink.events if event.type == "delta"]  # a tool plan is not the answer


def test_a_json_schema_response_format_in_each_vendors_shape(vendor: Vendor) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": True}}
    vendor.provider.complete(chat(response_format=response_format), "m")
    sent = vendor.sent()
    if vendor.name == "openai":
        assert sent["response_format"] == response_format
    elif vendor.name == "gemini":
        config = sent["generationConfig"]
        assert config["responseMimeType"] == "application/json"
        assert config["responseSchema"]["properties"] == {"city": {"type": "STRING"}}
    else:
        assert sent["response_format"] == {"type": "json_object", "json_schema": schema}


def test_a_json_object_response_format_in_each_vendors_shape(vendor: Vendor) -> None:
    vendor.provider.complete(chat(response_format={"type": "json_object"}), "m")
    sent = vendor.sent()
    if vendor.name == "gemini":
        assert sent["generationConfig"]["responseMimeType"] == "application/json"
        assert "responseSchema" not in sent["generationConfig"]
    else:
        assert sent["response_format"] == {"type": "json_object"}


def test_sampling_fields_are_mapped_or_left_out(vendor: Vendor) -> None:
    fields: dict[str, Any] = {
        "stop": ["END"],
        "seed": 7,
        "top_p": 1.0,
        "presence_penalty": -0.5,
        "frequency_penalty": 0.5,
    }
    vendor.provider.complete(chat(user="user-42", **fields), "m")
    sent = vendor.sent()
    if vendor.name == "openai":
        assert {key: sent[key] for key in fields} == fields and sent["user"] == "user-42"
    elif vendor.name == "gemini":
        config = sent["generationConfig"]
        assert (config["stopSequences"], config["seed"], config["topP"]) == (["END"], 7, 1.0)
        assert (config["presencePenalty"], config["frequencyPenalty"]) == (-0.5, 0.5)
        assert "user-42" not in json.dumps(sent)
    else:  # held within Cohere's documented ranges
        assert (sent["stop_sequences"], sent["seed"], sent["p"]) == (["END"], 7, 0.99)
        assert (sent["presence_penalty"], sent["frequency_penalty"]) == (0.0, 0.5)
        assert "user-42" not in json.dumps(sent)


def test_cached_prompt_tokens_are_reported(vendor: Vendor) -> None:
    vendor.fake.cached_tokens = 12  # type: ignore[attr-defined]
    usage = vendor.provider.complete(chat(), "m").usage
    assert usage["cached_input_tokens"] == 12 and usage["input_tokens"] >= 1


def test_logprobs_are_served_where_the_vendor_gives_them(vendor: Vendor) -> None:
    request = chat(logprobs=True, top_logprobs=2)
    if vendor.name == "cohere":
        with pytest.raises(UnsupportedInput, match="logprobs"):
            vendor.provider.complete(request, "m")
        assert vendor.fake.requests == []  # refused before anything was sent
        return
    output = vendor.provider.complete(request, "m").output
    assert output.logprobs is not None
    assert "".join(token["token"] for token in output.logprobs["content"]) == output.message.content
    if vendor.name == "openai":
        assert vendor.sent()["logprobs"] is True and vendor.sent()["top_logprobs"] == 2
    else:
        config = vendor.sent()["generationConfig"]
        assert (config["responseLogprobs"], config["logprobs"]) == (True, 2)
        assert {len(token["top_logprobs"]) for token in output.logprobs["content"]} == {2}


def test_streamed_logprobs_are_gathered(vendor: Vendor) -> None:
    if vendor.name == "cohere":  # not mapped: the request passes Cohere by, streamed or not
        with pytest.raises(UnsupportedInput, match="logprobs"):
            streamed_output(vendor.provider, chat(logprobs=True, stream=True))
        return
    output, sink = streamed_output(vendor.provider, chat(logprobs=True, stream=True))
    text = "".join(event.text for event in sink.events if event.type == "delta")
    assert output.logprobs is not None and text == output.message.content
    assert "".join(token["token"] for token in output.logprobs["content"]) == text


def test_a_provider_without_tools_passes_the_request_on(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings("space", "stepper.providers.hf_space:HfSpaceProvider", "http://127.0.0.1:9")
    provider = HfSpaceProvider(settings)
    with pytest.raises(UnsupportedInput, match="response_format, stop, tools"):
        provider.complete(chat(tools=[WEATHER], stop="x", response_format={"type": "json_object"}), "m")


@pytest.fixture
def openai(monkeypatch: pytest.MonkeyPatch, memory: MemoryCapabilities) -> Iterator[Vendor]:
    monkeypatch.setenv("TEST_VENDOR_KEY", KEY)
    fake = FakeOpenAI(KEY)
    fake.start()
    yield Vendor("openai", fake, OpenAIProvider(_settings("openai", "x:Y", f"{fake.url}/v1")))
    fake.stop()


def refusal(param: str) -> Fault:
    message = f"Unrecognized request argument supplied: {param}"
    return Fault(status=400, body={"error": {"message": message, "type": "invalid_request_error", "param": param}})


def test_a_refused_sampling_hint_is_remembered_and_left_out(openai: Vendor, memory: MemoryCapabilities) -> None:
    openai.fake.inject(refusal("seed"))
    with pytest.raises(UnsupportedParameter):
        openai.provider.complete(chat(seed=7), "m")
    openai.provider.complete(chat(seed=7), "m")  # the chain's second try
    assert "seed" not in openai.sent() and memory.refused("openai", "m") == {"seed"}


def test_a_refused_field_the_request_needs_moves_the_chain_on(openai: Vendor, memory: MemoryCapabilities) -> None:
    openai.fake.inject(refusal("tools"))
    with pytest.raises(UnsupportedInput, match="needs it"):
        openai.provider.complete(chat(tools=[WEATHER]), "m")
    with pytest.raises(UnsupportedInput, match="refused tools"):  # from now on, without a call
        openai.provider.complete(chat(tools=[WEATHER]), "m")
    assert len(openai.fake.requests) == 1
    assert openai.provider.complete(chat(tools=[WEATHER], tool_choice="none"), "m").output.finish_reason == "stop"
    assert "tools" not in openai.sent()  # not needed with tool_choice none: left out


@pytest.fixture
def gemini(monkeypatch: pytest.MonkeyPatch, memory: MemoryCapabilities) -> Iterator[Vendor]:
    monkeypatch.setenv("TEST_VENDOR_KEY", KEY)
    fake = FakeGemini(KEY)
    fake.start()
    yield Vendor("gemini", fake, GeminiProvider(_settings("gemini", "x:Y", f"{fake.url}/v1beta")))
    fake.stop()


def replay(first: Any, extra_content: Any) -> ChatRequest:
    [call] = first.tool_calls or []
    called = {**first.model_dump(), "tool_calls": [{**call.model_dump(), "extra_content": extra_content}]}
    result = {"role": "tool", "tool_call_id": call.id, "content": "21"}
    return chat([{"role": "user", "content": "Weather?"}, called, result], tools=[WEATHER])


def test_gemini_thought_signatures_go_back_with_their_calls(gemini: Vendor) -> None:
    model = "gemini-3-flash-preview"
    first = gemini.provider.complete(chat(tools=[WEATHER]), model).output.message
    [call] = first.tool_calls or []
    assert call.extra_content == {"google": {"thought_signature": SIGNATURE}}
    gemini.provider.complete(replay(first, call.extra_content), model)
    assert gemini.sent()["contents"][1]["parts"][0]["thoughtSignature"] == SIGNATURE


def test_a_gemini_3_call_replayed_without_its_signature_gets_googles_stand_in(gemini: Vendor) -> None:
    first = gemini.provider.complete(chat(tools=[WEATHER]), "gemini-3-flash-preview").output.message
    reply = gemini.provider.complete(replay(first, None), "gemini-3-flash-preview")
    assert reply.output.finish_reason == "stop"  # the fake, like Gemini 3, refuses an unsigned replay
    assert gemini.sent()["contents"][1]["parts"][0]["thoughtSignature"] == "skip_thought_signature_validator"
    gemini.provider.complete(replay(first, None), "gemini-2.0-flash")
    assert "thoughtSignature" not in gemini.sent()["contents"][1]["parts"][0]


def test_a_streamed_gemini_call_brings_its_signature(gemini: Vendor) -> None:
    output, sink = streamed_output(gemini.provider, chat(tools=[WEATHER], stream=True))
    [fragment] = [json.loads(event.text) for event in sink.events if event.type == "tool_call"]
    assert fragment["extra_content"] == {"google": {"thought_signature": SIGNATURE}}
    assert (output.message.tool_calls or [])[0].extra_content == fragment["extra_content"]
