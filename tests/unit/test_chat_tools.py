"""stepper.chat's OpenAI surface without a server: the request's checks, the mock's tool flow, budgets that
keep a call with its results, and tool calls as stream events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stepper.errors import InvalidRequest
from stepper.families import FAMILIES
from stepper.gateway.openai_compat import _delta
from stepper.infra.streams import StreamEvent, answer_events
from stepper.providers.llm.budget import fit_conversation
from stepper.providers.llm.call import LlmCall, needed_features
from stepper.providers.mock import MockProvider, example_of
from stepper.schemas import ChatOutput, ChatRequest
from stepper.schemas.chat import Message
from tests.unit.factories import MOCK_SPEC, provider_settings

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"enum": ["c", "f"]}},
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
ASKED = {"role": "user", "content": "Weather in Paris?"}
CALLED = {"role": "assistant", "content": None, "tool_calls": [CALL]}
ANSWERED = {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees"}


def parse(**kwargs: Any) -> ChatRequest:
    request = FAMILIES["chat"].parse(kwargs)
    assert isinstance(request, ChatRequest)
    return request


def mock(**kwargs: Any) -> ChatOutput:
    provider = MockProvider(provider_settings("mock", **MOCK_SPEC))
    return provider.complete(parse(**kwargs), "mock-model").output


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"messages": [ASKED, ANSWERED]}, "which no earlier assistant message made"),
        ({"messages": [ASKED, {**ANSWERED, "tool_call_id": None}]}, "needs tool_call_id"),
        ({"messages": [{**ASKED, "tool_call_id": "call_1"}]}, "only it may"),
        ({"messages": [{**ASKED, "tool_calls": [CALL]}]}, "only assistant messages carry tool_calls"),
        (
            {"messages": [ASKED, {**CALLED, "tool_calls": [{**CALL, "function": {"name": "f", "arguments": "[1]"}}]}]},
            "must be a JSON object",
        ),
        ({"messages": [ASKED], "tool_choice": "required"}, "tool_choice needs tools"),
        (
            {"messages": [ASKED], "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "not among the tools",
        ),
        ({"messages": [ASKED], "tools": [WEATHER, WEATHER]}, "distinct function names"),
        ({"messages": [ASKED], "tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools.0.function.name"),
        ({"messages": [ASKED], "top_logprobs": 2}, "top_logprobs needs logprobs"),
        ({"messages": [ASKED], "response_format": {"type": "json_schema"}}, "json_schema is required"),
        ({"messages": [ASKED], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": [ASKED], "n": 2}, "n"),
    ],
)
def test_bad_requests_are_refused_before_any_provider(kwargs: dict[str, Any], said: str) -> None:
    with pytest.raises(InvalidRequest, match=said):
        FAMILIES["chat"].parse(kwargs)


def test_a_plain_chat_keeps_its_content_and_cache_key() -> None:
    """The fields added with the OpenAI surface stay out of content() at their defaults."""
    assert parse(messages=[ASKED]).content() == {
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "model": None,
        "max_tokens": None,
        "temperature": None,
    }
    assert parse(messages=[ASKED], seed=3, stop="x").content()["stop"] == ["x"]


def test_needed_features_are_what_the_answer_depends_on() -> None:
    assert needed_features(parse(messages=[ASKED], tools=[WEATHER], tool_choice="none", seed=1, top_p=0.5)) == set()
    assert needed_features(parse(messages=[ASKED, CALLED, ANSWERED])) == {"tools"}
    request = parse(messages=[ASKED], tools=[WEATHER], stop="x", logprobs=True, response_format={"type": "json_object"})
    assert needed_features(request) == {"tools", "stop", "logprobs", "response_format"}
    call = LlmCall.for_chat(request, "m", request.messages, 10)
    assert call.required == {"tools", "stop", "logprobs", "response_format"}  # tool_choice, top_logprobs unset
    forced = parse(messages=[ASKED], tools=[WEATHER], tool_choice="required", logprobs=True, top_logprobs=1)
    assert LlmCall.for_chat(forced, "m", forced.messages, 10).required == {
        "tools",
        "tool_choice",
        "logprobs",
        "top_logprobs",
    }


def test_the_mock_calls_the_first_tool_with_arguments_from_its_schema() -> None:
    output = mock(messages=[ASKED], tools=[WEATHER, TIME])
    assert output.finish_reason == "tool_calls" and output.message.content is None
    [call] = output.message.tool_calls or []
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    assert json.loads(call.function.arguments) == {"city": "Weather in Paris?", "days": 1, "unit": "c"}
    assert mock(messages=[ASKED], tools=[WEATHER, TIME]) == output  # deterministic


def test_the_mock_honours_tool_choice() -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    [call] = mock(messages=[ASKED], tools=[WEATHER, TIME], tool_choice=named).message.tool_calls or []
    assert (call.function.name, call.function.arguments) == ("get_time", "{}")
    assert mock(messages=[ASKED], tools=[WEATHER], tool_choice="none").message.tool_calls is None
    again = mock(messages=[ASKED, CALLED, ANSWERED], tools=[WEATHER], tool_choice="required")
    assert again.finish_reason == "tool_calls"


def test_the_mock_answers_a_tool_result_in_words() -> None:
    output = mock(messages=[ASKED, CALLED, ANSWERED], tools=[WEATHER])
    assert output.finish_reason == "stop" and output.message.tool_calls is None
    assert (output.message.content or "").endswith("get_weather returned: 21 degrees")


def test_the_mock_answers_json_formats_and_stops() -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "tags": {"type": "array", "items": {}}}}
    formats = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
    assert json.loads(mock(messages=[ASKED], response_format=formats).message.content or "") == {
        "ok": True,
        "tags": [None],
    }
    as_object = json.loads(mock(messages=[ASKED], response_format={"type": "json_object"}).message.content or "")
    assert as_object["you_said"] == "Weather in Paris?"
    stopped = mock(messages=[ASKED], stop="said").message.content or ""
    assert stopped.startswith("[mock ") and stopped.endswith("] You ")  # cut before "said: Weather in Paris?"


def test_example_of_covers_the_plain_json_schema_keywords() -> None:
    assert example_of({"anyOf": [{"type": "null"}, {"type": "string"}]}, "t") is None
    assert example_of({"type": ["null", "number"]}, "t") == 1
    assert example_of({"const": 5}, "t") == 5
    assert example_of({"type": "string"}, "") == "mock"


def test_a_dropped_assistant_turn_takes_its_tool_results_along() -> None:
    long = "word " * 50
    messages = [
        Message(role="system", content="s"),
        Message(role="user", content="hi"),
        Message.model_validate({**CALLED, "content": long}),
        Message.model_validate(ANSWERED),
        Message(role="user", content="and tomorrow?"),
    ]
    kept, dropped = fit_conversation(messages, input_budget=100, output_tokens=10)
    assert [m.role for m in kept] == ["system", "user"] and dropped == 3
    assert not any(m.role == "tool" for m in kept)


def test_tool_calls_become_stream_events_and_openai_deltas() -> None:
    message = {"content": None, "tool_calls": [CALL]}
    [event] = answer_events(message)
    assert event.type == "tool_call"
    assert _delta(event) == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ]
    }
    later = StreamEvent.tool_call(0, None, None, "more")
    assert _delta(later) == {"tool_calls": [{"index": 0, "function": {"arguments": "more"}}]}
    assert [e.type for e in answer_events({"content": "hi", "tool_calls": None})] == ["delta"]
