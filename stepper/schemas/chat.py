"""``stepper.chat``: one chat completion, in the terms of OpenAI's Chat Completions API.

Tools, tool calls and ``tool`` messages, ``response_format`` and the sampling fields mean what they mean in
OpenAI's reference (platform.openai.com/docs/api-reference/chat/create); each provider maps them to its
vendor's wire format, and one that cannot honour a field the answer depends on (tools, ``response_format``,
``logprobs``, ``stop``) is passed over for the next in the chain. Sampling hints a vendor lacks (``seed``,
``user``, penalties, ``top_p``) are left out rather than refused.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from stepper.schemas.common import Strict, TaskRequest

Role = Literal["system", "user", "assistant", "tool"]
#: OpenAI's rule for function names, which Gemini and Cohere accept too.
FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class FunctionCall(Strict):
    name: str = Field(pattern=FUNCTION_NAME)
    #: The arguments as JSON text, as the model wrote them (OpenAI's shape): parse before use.
    arguments: str = Field(max_length=1_000_000)


class ToolCall(Strict):
    """One call of a function the request declared; ``id`` ties the ``tool`` message with its result to it."""

    id: str = Field(min_length=1, max_length=200)
    type: Literal["function"] = "function"
    function: FunctionCall
    #: What a vendor needs back with the call in the next turn, under the vendor's name, as Google's
    #: OpenAI-compatible API carries it: ``{"google": {"thought_signature": ...}}`` (Gemini's thought signature,
    #: which Gemini 3 requires on replayed function calls). Send the assistant message back as it came.
    extra_content: dict[str, Any] | None = None


class Message(Strict):
    """A turn. ``assistant`` turns may carry ``tool_calls`` (``content`` may then be empty); a ``tool`` turn
    gives one call's result as ``content`` and names the call by ``tool_call_id``."""

    role: Role
    content: str = Field(max_length=1_000_000)
    tool_calls: list[ToolCall] | None = Field(default=None, min_length=1, max_length=128)
    tool_call_id: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="before")
    @classmethod
    def _calls_without_text(cls, data: Any) -> Any:
        """OpenAI sends null (or no) content on an assistant turn that only calls tools."""
        if isinstance(data, dict) and data.get("tool_calls") and data.get("content") is None:
            return {**data, "content": ""}
        return data

    @model_validator(mode="after")
    def _fits_its_role(self) -> Message:
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError(f"only assistant messages carry tool_calls, not {self.role} messages")
        if (self.role == "tool") != (self.tool_call_id is not None):
            raise ValueError("a tool message needs tool_call_id (the id of the call it answers), and only it may")
        return self

    def budget_text(self) -> str:
        """Everything of the turn a model reads: its content and the calls it made, for token estimates."""
        calls = "".join(call.function.name + call.function.arguments for call in self.tool_calls or ())
        return self.content + calls


class FunctionDefinition(Strict):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = Field(default=None, max_length=100_000)
    #: The arguments as a JSON Schema object; None: the function takes none.
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Strict):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class ToolChoiceFunction(Strict):
    name: str = Field(pattern=FUNCTION_NAME)


class NamedToolChoice(Strict):
    """Force a call of this one function."""

    type: Literal["function"] = "function"
    function: ToolChoiceFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JsonSchemaFormat(Strict):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    #: ``schema`` on the wire; pydantic's BaseModel owns the attribute name.
    json_schema: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


class ResponseFormat(Strict):
    """``json_object``: any JSON object; ``json_schema``: JSON valid against ``json_schema.schema``."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_when_needed(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is required with type json_schema, and only with it")
        return self


#: Fields added with the OpenAI surface (tools, formats, sampling).
NEWER_FIELDS = ("top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs",
                "tools", "tool_choice", "response_format", "user")  # fmt: skip


class ChatRequest(TaskRequest):
    messages: list[Message] = Field(min_length=1, max_length=1000)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: list[str] | None = Field(default=None, min_length=1, max_length=4, description="up to 4 stop sequences")
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[Tool] | None = Field(default=None, min_length=1, max_length=128)
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None
    user: str | None = Field(
        default=None, max_length=256, description="the end user's id, for the vendor's abuse checks"
    )
    stream: bool = Field(default=False, description="publish deltas to the task's Redis stream (stepper.stream)")

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value  # OpenAI takes a string or a list

    @model_validator(mode="after")
    def _consistent(self) -> ChatRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        names = {tool.function.name for tool in self.tools or ()}
        if self.tool_choice is not None and self.tool_choice != "none" and not names:
            raise ValueError("tool_choice needs tools: declare the functions the model may call")
        if isinstance(self.tool_choice, NamedToolChoice) and self.tool_choice.function.name not in names:
            raise ValueError(f"tool_choice names {self.tool_choice.function.name!r}, which is not among the tools")
        if self.tools is not None and len(names) != len(self.tools):
            raise ValueError("tools must have distinct function names")
        called: set[str] = set()
        for index, message in enumerate(self.messages):
            for call in message.tool_calls or ():
                _check_arguments(call, index)
                called.add(call.id)
            if message.tool_call_id is not None and message.tool_call_id not in called:
                raise ValueError(
                    f"messages[{index}] answers tool call {message.tool_call_id!r}, which no earlier assistant "
                    "message made; give the assistant message with that call before its result"
                )
        return self

    def content(self) -> dict[str, Any]:
        """As for every request, leaving out the fields of the OpenAI surface while they hold their defaults:
        a plain chat keeps the cache key (and mock answer) it had before they existed."""
        content = super().content()
        for name in NEWER_FIELDS:
            if content.get(name) == type(self).model_fields[name].default:
                del content[name]
        for message in content["messages"]:
            for name in ("tool_calls", "tool_call_id"):
                if message[name] is None:
                    del message[name]
            for call in message.get("tool_calls") or ():
                if call["extra_content"] is None:
                    del call["extra_content"]
        return content


class AssistantMessage(Strict):
    role: Literal["assistant"] = "assistant"
    #: None when the assistant only calls tools, as in OpenAI's API.
    content: str | None
    tool_calls: list[ToolCall] | None = None


class ChatOutput(Strict):
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    #: OpenAI's ``choices[].logprobs`` (``{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}``) when
    #: the request asked for ``logprobs`` and the provider gives them.
    logprobs: dict[str, Any] | None = None


def tool_name(messages: list[Message], call_id: str) -> str:
    """The function that the call ``call_id``, made in ``messages`` (a validated request's), called: for vendors
    that key a tool's result by the function's name rather than the call's id."""
    return next(call.function.name for m in messages for call in m.tool_calls or () if call.id == call_id)


def arguments_object(call: ToolCall) -> dict[str, Any]:
    """A requested call's arguments (checked to be a JSON object) parsed, for vendors that take them so."""
    value: dict[str, Any] = json.loads(call.function.arguments or "{}")
    return value


def _check_arguments(call: ToolCall, index: int) -> None:
    try:
        value = json.loads(call.function.arguments or "{}")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ValueError(
            f"messages[{index}] tool call {call.id!r}: function.arguments must be a JSON object as text, "
            f"got {call.function.arguments[:80]!r}"
        )
