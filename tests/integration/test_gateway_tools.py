"""The official openai SDK's tool-calling flow against the gateway, plain and streamed: first with the mock
fleet (the offline flow a user can try), then with real workers whose chain is three vendor fakes, each
checking its own wire format (OpenAI's tools, Gemini's functionDeclarations, Cohere v2's tools)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from stepper.gateway.auth import key_digest
from tests.integration.conftest import GATEWAY_KEY, Fleet
from tests.support.fake_http import FakeServer, serving
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.vendors.cohere import FakeCohere
from tests.support.vendors.gemini import SIGNATURE, FakeGemini
from tests.support.vendors.openai import FakeOpenAI

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
QUESTION: Any = {"role": "user", "content": "What is the weather in Paris?"}
KEYS = {"OPENAI_API_KEY": "sk-t-openai-123456", "GEMINI_API_KEY": "AIza-t-gemini-123456",
        "COHERE_API_KEY": "co-t-cohere-123456"}  # fmt: skip
MODELS = {"openai": "gpt-4o-mini", "gemini": "gemini-2.0-flash", "cohere": "command-r-plus-08-2024"}


def function_call(calls: Any) -> ChatCompletionMessageFunctionToolCall:
    """The one function call of an answer (the SDK's union also has custom tool calls)."""
    [call] = calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    return call


def sdk(gateway: RunningGateway) -> OpenAI:
    return OpenAI(base_url=f"{gateway.url}/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=60)


def streamed_tool_calls(stream: Any) -> tuple[list[dict[str, Any]], list[str], str]:
    """Assemble streamed tool calls as an SDK user does: by ``index``, concatenating ``function.arguments``."""
    calls: dict[int, dict[str, Any]] = {}
    finishes: list[str] = []
    text = ""
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        text += choice.delta.content or ""
        for fragment in choice.delta.tool_calls or ():
            call = calls.setdefault(fragment.index, {"id": None, "name": None, "arguments": ""})
            assert not (call["id"] and fragment.id), "the id is sent once, on a call's first fragment"
            call["id"] = call["id"] or fragment.id
            if fragment.function is not None:
                call["name"] = call["name"] or fragment.function.name
                call["arguments"] += fragment.function.arguments or ""
        if choice.finish_reason:
            finishes.append(choice.finish_reason)
    return [calls[index] for index in sorted(calls)], finishes, text


# --- the mock fleet: the flow offline -------------------------------------------------------------------------


def test_the_mock_calls_a_tool_then_answers_from_its_result(gateway: RunningGateway) -> None:
    client = sdk(gateway)
    first = client.chat.completions.create(model="gpt-4o-mini", messages=[QUESTION], tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = function_call(choice.message.tool_calls)
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "What is the weather in Paris?"}
    result = {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 21}'}
    conversation: list[Any] = [QUESTION, choice.message, result]
    second = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=conversation,  # the SDK's own message object, as its docs show
        tools=[WEATHER],
    )
    assert second.choices[0].finish_reason == "stop"
    assert 'get_weather returned: {"temperature_c": 21}' in (second.choices[0].message.content or "")
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details.cached_tokens == 0


def test_the_mocks_streamed_tool_call_matches_its_plain_one(gateway: RunningGateway) -> None:
    client = sdk(gateway)
    messages: Any = [{"role": "user", "content": "Weather in Lyon, streamed?"}]
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER])
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER], stream=True)
    calls, finishes, text = streamed_tool_calls(stream)
    expected = function_call(plain.choices[0].message.tool_calls)
    assert calls == [{"id": expected.id, "name": "get_weather", "arguments": expected.function.arguments}]
    assert finishes == ["tool_calls"] and text == ""


def test_a_cached_tool_call_streams_whole(gateway: RunningGateway) -> None:
    """At temperature 0 the answer is cached, and the streamed request is answered whole (from the cache, or as
    the mock, which does not stream, answers): its tool call arrives in one complete fragment."""
    client = sdk(gateway)
    messages: Any = [{"role": "user", "content": "Weather in Nice, cached?"}]
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER], temperature=0)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=[WEATHER], temperature=0, stream=True
    )
    chunks = [chunk for chunk in stream if chunk.choices and chunk.choices[0].delta.tool_calls]
    expected = function_call(plain.choices[0].message.tool_calls)
    [only] = chunks
    [fragment] = only.choices[0].delta.tool_calls or []
    assert fragment.function is not None
    assert (fragment.index, fragment.id, fragment.type) == (0, expected.id, "function")
    assert (fragment.function.name, fragment.function.arguments) == ("get_weather", expected.function.arguments)


def test_the_sdks_stream_helper_assembles_the_tool_call(gateway: RunningGateway) -> None:
    """``chat.completions.stream`` parses every chunk into the SDK's models and accumulates them strictly."""
    with sdk(gateway).chat.completions.stream(
        model="gpt-4o-mini", messages=[QUESTION], tools=[WEATHER], tool_choice="required"
    ) as stream:
        done = [event for event in stream if event.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    call = function_call(final.choices[0].message.tool_calls)
    assert [event.name for event in done] == ["get_weather"] and call.function.name == "get_weather"
    assert final.choices[0].finish_reason == "tool_calls"


def test_a_json_response_format_gets_json(gateway: RunningGateway) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}
    response_format: Any = {"type": "json_schema", "json_schema": {"name": "forecast", "schema": schema}}
    completion = sdk(gateway).chat.completions.create(
        model="gpt-4o-mini",
        messages=[QUESTION],
        response_format=response_format,
    )
    assert json.loads(completion.choices[0].message.content or "") == {
        "city": "What is the weather in Paris?",
        "days": 1,
    }


def test_bad_tool_requests_and_n_above_one_are_refused_clearly(gateway: RunningGateway) -> None:
    client = sdk(gateway)
    with pytest.raises(openai.BadRequestError) as many:
        client.chat.completions.create(model="gpt-4o-mini", messages=[QUESTION], n=2)
    assert many.value.code == "n_not_supported" and "send n requests" in str(many.value)
    legacy: Any = [{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}]
    with pytest.raises(openai.BadRequestError, match="send tools and tool_choice instead"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[QUESTION], functions=legacy)
    orphan = {"role": "tool", "tool_call_id": "call_nowhere", "content": "21"}
    with pytest.raises(openai.UnprocessableEntityError) as unanswered:
        client.chat.completions.create(model="gpt-4o-mini", messages=[QUESTION, orphan], tools=[WEATHER])  # type: ignore[list-item]
    assert "call_nowhere" in str(unanswered.value)
    with pytest.raises(openai.UnprocessableEntityError) as unknown:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[QUESTION],
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        )
    assert "get_time" in str(unknown.value)


# --- real workers, three vendor fakes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vendors() -> Iterator[dict[str, FakeServer]]:
    fakes: dict[str, FakeServer] = {
        "openai": FakeOpenAI(KEYS["OPENAI_API_KEY"]),
        "gemini": FakeGemini(KEYS["GEMINI_API_KEY"]),
        "cohere": FakeCohere(KEYS["COHERE_API_KEY"]),
    }
    with ExitStack() as started:
        for fake in fakes.values():
            started.enter_context(serving(fake))
        yield fakes


@pytest.fixture(scope="module")
def vendor_gateway(
    start_fleet: Callable[..., Fleet], vendors: dict[str, FakeServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    settings: dict[str, Any] = {
        "stepper_chains": {"chat": [f"{name}:{model}" for name, model in MODELS.items()]},
        "stepper_retry": {"attempts_per_provider": 1, "max_inline_wait_s": 0.5},
    }
    env = {**KEYS, **{f"STEPPER_{name.upper()}_BASE_URL": fake.base_url for name, fake in vendors.items()}}  # type: ignore[attr-defined]
    fleet = start_fleet(settings, name="tool-vendors", env=env)
    gateway_settings = {**settings, "stepper_gateway": {"key_hashes": [key_digest(GATEWAY_KEY)]}}
    directory = Path(tmp_path_factory.mktemp("tool-gateway"))
    with running_gateway(fleet.url, directory, gateway_settings, env=KEYS) as running:
        yield running


def wire_tools(vendor: str, body: dict[str, Any]) -> list[str]:
    """The function names a vendor's request declared, read in that vendor's own shape."""
    if vendor == "gemini":
        return [d["name"] for tool in body["tools"] for d in tool["functionDeclarations"]]
    return [tool["function"]["name"] for tool in body["tools"]]


@pytest.mark.parametrize("vendor", list(MODELS))
def test_the_sdk_tool_flow_through_each_vendor(
    vendor_gateway: RunningGateway, vendors: dict[str, FakeServer], vendor: str
) -> None:
    client, fake = sdk(vendor_gateway), vendors[vendor]
    seen = len(fake.requests)
    first = client.chat.completions.create(model=MODELS[vendor], messages=[QUESTION], tools=[WEATHER])
    choice = first.choices[0]
    call = function_call(choice.message.tool_calls)
    assert choice.finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "city value"}
    assert wire_tools(vendor, fake.requests[seen].json()) == ["get_weather"]
    result = {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 21}'}
    conversation: list[Any] = [QUESTION, choice.message, result]
    second = client.chat.completions.create(model=MODELS[vendor], messages=conversation, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert "21" in (second.choices[0].message.content or "")
    assert len(fake.requests) == seen + 2  # each answered by this vendor, which accepted its wire format
    if vendor == "gemini":  # the thought signature went out with the call and came back through the SDK
        assert (call.model_extra or {}).get("extra_content") == {"google": {"thought_signature": SIGNATURE}}
        assert fake.requests[seen + 1].json()["contents"][1]["parts"][0]["thoughtSignature"] == SIGNATURE


@pytest.mark.parametrize("vendor", list(MODELS))
def test_a_streamed_tool_call_through_each_vendor(
    vendor_gateway: RunningGateway, vendors: dict[str, FakeServer], vendor: str
) -> None:
    fake = vendors[vendor]
    seen = len(fake.requests)
    stream = sdk(vendor_gateway).chat.completions.create(
        model=MODELS[vendor], messages=[{"role": "user", "content": "Stream me a call"}], tools=[WEATHER], stream=True
    )
    calls, finishes, text = streamed_tool_calls(stream)
    assert [(call["name"], json.loads(call["arguments"])) for call in calls] == [
        ("get_weather", {"city": "city value"})
    ]
    assert calls[0]["id"] and finishes == ["tool_calls"] and text == ""
    assert wire_tools(vendor, fake.requests[seen].json()) == ["get_weather"]


def test_a_request_no_provider_can_serve_is_a_400_the_sdk_does_not_retry(
    vendor_gateway: RunningGateway, vendors: dict[str, FakeServer]
) -> None:
    seen = len(vendors["cohere"].requests)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(vendor_gateway).chat.completions.create(model=MODELS["cohere"], messages=[QUESTION], logprobs=True)
    assert refused.value.code == "unsupported_request" and "cannot serve logprobs" in str(refused.value)
    assert len(vendors["cohere"].requests) == seen  # refused before anything was sent
