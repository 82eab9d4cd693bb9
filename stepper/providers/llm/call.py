"""One vendor-neutral LLM call and its answer, and the helpers adapters share to read vendors' answers.

An ``LlmCall`` carries a chat request's OpenAI-surface fields (tools, formats, sampling) and which of them the
answer depends on (``required``); ``needed_features`` says which features a request cannot do without.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from stepper.errors import TruncatedOutput
from stepper.schemas import ChatRequest
from stepper.schemas.chat import Message, ResponseFormat, Tool, ToolCall, ToolChoice

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
#: Chat features a vendor may lack, each a top-level request field the answer depends on.
Feature = Literal["tools", "response_format", "logprobs", "stop"]


@dataclass(frozen=True)
class LlmCall:
    """One vendor-neutral request."""

    model: str
    messages: list[Message]
    max_tokens: int
    temperature: float | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    stop: list[str] | None = None
    top_p: float | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    user: str | None = None
    #: Top-level request fields this call cannot do without: a server that refused one lately is passed over.
    required: frozenset[str] = frozenset()

    @classmethod
    def for_chat(cls, request: ChatRequest, model: str, messages: list[Message], max_tokens: int) -> LlmCall:
        return cls(
            model,
            messages,
            max_tokens,
            request.temperature,
            request.response_format if request.response_format and request.response_format.type != "text" else None,
            request.tools,
            request.tool_choice,
            request.stop,
            request.top_p,
            request.seed,
            request.presence_penalty,
            request.frequency_penalty,
            request.logprobs,
            request.top_logprobs,
            request.user,
            required_fields(request),
        )


#: The wire fields each feature travels in (OpenAI's names; adapters map them).
REQUIRED_FIELDS: dict[Feature, tuple[str, ...]] = {
    "tools": ("tools", "tool_choice"),
    "response_format": ("response_format",),
    "logprobs": ("logprobs", "top_logprobs"),
    "stop": ("stop",),
}


def required_fields(request: ChatRequest) -> frozenset[str]:
    """The wire fields ``request`` sets that its answer depends on: a ``tool_choice`` left unset is not one."""
    return frozenset(
        wire
        for feature in needed_features(request)
        for wire in REQUIRED_FIELDS[feature]
        if getattr(request, wire) not in (None, False)
    )


def needed_features(request: ChatRequest) -> frozenset[Feature]:
    """The features of ``request`` its answer depends on. Tools with ``tool_choice: none`` need none."""
    needed: set[Feature] = set()
    if request.tools and request.tool_choice != "none":
        needed.add("tools")
    if any(m.role == "tool" or m.tool_calls for m in request.messages):
        needed.add("tools")  # a conversation with tool turns is sent as such
    if request.response_format is not None and request.response_format.type != "text":
        needed.add("response_format")
    if request.logprobs:
        needed.add("logprobs")
    if request.stop:
        needed.add("stop")
    return frozenset(needed)


@dataclass(frozen=True)
class ToolCallDelta:
    """A fragment of a streamed tool call, in the terms of OpenAI's chunks: the first fragment of call ``index``
    carries its ``id`` and ``name``, later ones more of its ``arguments`` text."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    #: ``ToolCall.extra_content``, on the fragment that brings it.
    extra_content: dict[str, Any] | None = None


@dataclass(frozen=True)
class LlmAnswer:
    text: str
    finish_reason: FinishReason
    usage: dict[str, int] = field(default_factory=dict)
    tool_calls: list[ToolCall] = field(default_factory=list)
    #: OpenAI's ``choices[].logprobs`` object, when asked for and given.
    logprobs: dict[str, Any] | None = None


def usage_of(input_tokens: Any, output_tokens: Any, cached_input_tokens: Any = None) -> dict[str, int]:
    """Usage in stepper's terms, from whatever the vendor reported (missing figures are left out).
    ``cached_input_tokens`` are the part of ``input_tokens`` the vendor served from its prompt cache."""
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens, "cached_input_tokens": cached_input_tokens}
    return {key: int(value) for key, value in usage.items() if isinstance(value, int | float)}


def tool_call_id(provider: str, index: int, name: str, arguments: str) -> str:
    """An id for a vendor's call that came without one (Gemini's usually do): stable for the same answer, so
    the caller's ``tool`` message can name it."""
    digest = hashlib.sha256(f"{provider}/{index}/{name}/{arguments}".encode()).hexdigest()
    return f"call_{digest[:24]}"


def tool_call_of(provider: str, item: Any) -> ToolCall:
    """A tool call in OpenAI's shape (``{"id", "function": {"name", "arguments"}}``, which Cohere's v2 shares)
    as stepper's; a malformed one is no usable answer."""
    try:
        function = item["function"]
        arguments = function.get("arguments") or "{}"
        return ToolCall(id=item["id"], function={"name": function["name"], "arguments": arguments})
    except (KeyError, TypeError, AttributeError, ValueError):
        raise TruncatedOutput(f"{provider} answered a malformed tool call") from None


def tool_choice_function(choice: ToolChoice | None) -> str | None:
    """The function a named ``tool_choice`` forces, if it names one."""
    return None if choice is None or isinstance(choice, str) else choice.function.name
