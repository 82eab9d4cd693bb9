"""Cohere's Chat API v2 (``POST https://api.cohere.com/v2/chat``), plain and streaming.

Matched against Cohere's API reference (docs.cohere.com/reference/chat and /reference/chat-stream) and the
SDK generated from its API definition (cohere-ai/cohere-python, ``v2/raw_client.py``, ``types/``). Reports
use ``response_format: {"type": "json_object", "json_schema": ...}``. Stream events name their type both in
the SSE ``event:`` line and in the JSON ``type`` field; the JSON field is read first, as the SDK does. Only
``message-end`` says an answer is whole: a stream that ends without it is truncated.

Chat features, per the same reference and the guides "Tool use" and "Streaming for tool use": v2 takes
OpenAI-shaped ``tools``, assistant ``tool_calls`` and ``tool`` messages (``tool_call_id``, ``content``) as they
are. ``tool_choice`` ``required`` is ``REQUIRED``, ``none`` ``NONE``, ``auto`` is left out, and a named function
is ``REQUIRED`` with only that tool declared. An answer of tool calls finishes ``TOOL_CALL``; streamed, each call
is ``tool-call-start`` (id, name) then ``tool-call-delta`` (argument text), and the ``tool-plan-delta`` text (the
model's plan, not its answer) is passed over. ``response_format`` ``json_object`` and ``json_schema`` are both
``json_object``, the latter with its ``json_schema``. ``stop`` is ``stop_sequences``, ``top_p`` is ``p`` (held
within Cohere's 0.01-0.99), the penalties are held within Cohere's 0-1, ``seed`` is sent; ``user`` has no
counterpart and ``logprobs`` is not mapped (a request needing it passes Cohere by).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from stepper.errors import AuthError, ProviderError, TruncatedOutput, Unavailable
from stepper.providers.http import HttpClient
from stepper.providers.llm.base import LlmProvider, finish_reason
from stepper.providers.llm.call import (
    FinishReason,
    LlmAnswer,
    LlmCall,
    ToolCallDelta,
    tool_call_of,
    tool_choice_function,
    usage_of,
)
from stepper.providers.transport import Answer
from stepper.schemas.chat import Message

#: ``ChatFinishReason`` of API v2. ERROR and TIMEOUT mean no usable answer.
#: v2 documents no safety finish (v1's ERROR_TOXIC is gone), so none maps to content_filter.
FINISH_REASONS: dict[str, FinishReason] = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}
NOT_AN_ANSWER = frozenset({None, "ERROR", "TIMEOUT"})
TOOL_CHOICES = {"required": "REQUIRED", "none": "NONE"}


class CohereHttpClient(HttpClient):
    """Two statuses of Cohere's own, per its error reference and SDK: 498 (invalid token) is about the key, and
    499 (request cancelled) is worth retrying. (402, billing, is read as an exhausted quota by vendor_errors.)"""

    def error_for(self, response: Answer) -> ProviderError:
        error = super().error_for(response)
        if response.status_code == 498:
            return AuthError(f"{error}; check the key in {self.name}'s api_key_env")
        if response.status_code == 499:
            return Unavailable(str(error))
        return error


class CohereProvider(LlmProvider):
    default_base_url = "https://api.cohere.com"
    http_client = CohereHttpClient
    features = frozenset({"tools", "response_format", "stop"})

    def send(self, call: LlmCall) -> LlmAnswer:
        body = self.http.post_json("/v2/chat", self._payload(call, stream=False), self.auth_headers())
        message = body.get("message") if isinstance(body.get("message"), dict) else {}
        content = message.get("content")
        calls = [tool_call_of(self.settings.name, item) for item in message.get("tool_calls") or ()]
        if not isinstance(content, list) and not calls:
            raise TruncatedOutput(f"{self.settings.name} answered without message.content")
        # Reasoning models add {"type": "thinking"} items before the answer; only text items are the answer.
        text = "".join(item.get("text") or "" for item in content or () if _dig(item, "type") == "text")
        return LlmAnswer(text, self._finish_reason(body), _usage(body.get("usage")), calls)

    def send_streaming(self, call: LlmCall) -> Iterator[str | ToolCallDelta | LlmAnswer]:
        parts: list[str] = []
        calls: dict[Any, dict[str, Any]] = {}  # Cohere's index -> the call gathered so far, in arrival order
        for event in self.http.stream("POST", "/v2/chat", self._payload(call, stream=True), self.auth_headers()):
            if event.data == "[DONE]":
                break
            chunk = event.json_object(self.settings.name)
            kind = chunk.get("type") or event.event
            if kind == "content-delta":
                text = _dig(chunk, "delta", "message", "content", "text")
                if isinstance(text, str) and text:
                    parts.append(text)
                    yield text
            elif kind in ("tool-call-start", "tool-call-delta"):
                fragment = _dig(chunk, "delta", "message", "tool_calls") or {}
                arguments = _dig(fragment, "function", "arguments") or ""
                if kind == "tool-call-start":
                    calls[chunk.get("index")] = {
                        "id": fragment.get("id"),
                        "function": dict(fragment.get("function") or {}),
                    }
                    calls[chunk.get("index")]["function"]["arguments"] = arguments
                    name = _dig(fragment, "function", "name")
                    yield ToolCallDelta(len(calls) - 1, fragment.get("id"), name, arguments)
                elif chunk.get("index") in calls:
                    calls[chunk.get("index")]["function"]["arguments"] += arguments
                    yield ToolCallDelta(list(calls).index(chunk.get("index")), arguments=arguments)
            elif kind == "message-end":
                end = chunk["delta"] if isinstance(chunk.get("delta"), dict) else {}
                whole = [tool_call_of(self.settings.name, item) for item in calls.values()]
                yield LlmAnswer("".join(parts), self._finish_reason(end), _usage(end.get("usage")), whole)
                return
        raise TruncatedOutput(f"{self.settings.name} ended its stream without message-end")

    def _payload(self, call: LlmCall, stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": call.model,
            "messages": [_message(m) for m in call.messages],
            "max_tokens": call.max_tokens,
            "stream": stream,  # the SDK always sends it; the reference marks it required
        }
        if call.temperature is not None:
            payload["temperature"] = call.temperature
        if call.response_format is not None:
            schema = call.response_format.json_schema
            payload["response_format"] = {"type": "json_object"}
            if schema is not None:
                payload["response_format"]["json_schema"] = schema.json_schema
        if call.stop:
            payload["stop_sequences"] = call.stop
        if call.seed is not None:
            payload["seed"] = call.seed
        if call.top_p is not None:
            payload["p"] = min(max(call.top_p, 0.01), 0.99)
        for name in ("presence_penalty", "frequency_penalty"):
            if (value := getattr(call, name)) is not None:
                payload[name] = min(max(value, 0.0), 1.0)
        if call.tools:
            forced = tool_choice_function(call.tool_choice)
            tools = [tool for tool in call.tools if forced in (None, tool.function.name)]
            payload["tools"] = [tool.model_dump(exclude_none=True, exclude={"function": {"strict"}}) for tool in tools]
            if choice := "REQUIRED" if forced else TOOL_CHOICES.get(str(call.tool_choice)):
                payload["tool_choice"] = choice
        return payload

    def _finish_reason(self, holder: dict[str, Any]) -> FinishReason:
        """The finish of a response or a ``message-end`` delta: an error or a tool call is retryable, a reason
        stepper does not know yet is served (and logged once)."""
        reason = holder.get("finish_reason")
        if reason in NOT_AN_ANSWER:
            error = holder.get("error")  # message-end carries the reason for an ERROR finish
            detail = f" ({self.http.redact(str(error))[:200]})" if error else ""
            raise TruncatedOutput(f"{self.settings.name} finished with {reason!r}{detail}")
        return finish_reason(self.settings.name, reason, FINISH_REASONS, NOT_AN_ANSWER)


def _message(message: Message) -> dict[str, Any]:
    """A turn on v2's wire: an assistant's tool calls (with its text, if any), a tool's result by call id."""
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        wire["tool_calls"] = [call.model_dump(exclude={"extra_content"}) for call in message.tool_calls]
        if not message.content:
            del wire["content"]
    if message.tool_call_id is not None:
        wire["tool_call_id"] = message.tool_call_id
    return wire


def _dig(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...``, or None as soon as a level is missing or not an object."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _usage(usage: Any) -> dict[str, int]:
    """Tokens the model read and wrote (``usage.tokens``), else the billed ones (``usage.billed_units``); the
    prompt tokens served from Cohere's cache (``usage.cached_tokens``) when it says."""
    counts = _dig(usage, "tokens") or _dig(usage, "billed_units")
    return usage_of(_dig(counts, "input_tokens"), _dig(counts, "output_tokens"), _dig(usage, "cached_tokens"))
