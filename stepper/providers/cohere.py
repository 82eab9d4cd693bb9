"""Cohere's Chat API v2 (``POST https://api.cohere.com/v2/chat``), plain and streaming.

Matched against Cohere's API reference (docs.cohere.com/reference/chat and /reference/chat-stream) and the
SDK generated from its API definition (cohere-ai/cohere-python, ``v2/raw_client.py``, ``types/``). Reports
use ``response_format: {"type": "json_object", "json_schema": ...}``. Stream events name their type both in
the SSE ``event:`` line and in the JSON ``type`` field; the JSON field is read first, as the SDK does. Only
``message-end`` says an answer is whole: a stream that ends without it is truncated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import requests

from stepper.errors import AuthError, ProviderError, TruncatedOutput, Unavailable
from stepper.providers.http import HttpClient
from stepper.providers.llm.base import FinishReason, LlmAnswer, LlmCall, LlmProvider, finish_reason, usage_of

#: ``ChatFinishReason`` of API v2. TOOL_CALL (we send no tools), ERROR and TIMEOUT mean no usable answer.
#: v2 documents no safety finish (v1's ERROR_TOXIC is gone), so none maps to content_filter.
FINISH_REASONS: dict[str, FinishReason] = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length"}
NOT_AN_ANSWER = frozenset({None, "ERROR", "TIMEOUT", "TOOL_CALL"})


class CohereHttpClient(HttpClient):
    """Two statuses of Cohere's own, per its error reference and SDK: 498 (invalid token) is about the key, and
    499 (request cancelled) is worth retrying. (402, billing, is read as an exhausted quota by vendor_errors.)"""

    def error_for(self, response: requests.Response) -> ProviderError:
        error = super().error_for(response)
        if response.status_code == 498:
            return AuthError(f"{error}; check the key in {self.name}'s api_key_env")
        if response.status_code == 499:
            return Unavailable(str(error))
        return error


class CohereProvider(LlmProvider):
    default_base_url = "https://api.cohere.com"
    http_client = CohereHttpClient

    def send(self, call: LlmCall) -> LlmAnswer:
        body = self.http.post_json("/v2/chat", self._payload(call, stream=False), self.auth_headers())
        content = _dig(body, "message", "content")
        if not isinstance(content, list):
            raise TruncatedOutput(f"{self.settings.name} answered without message.content")
        # Reasoning models add {"type": "thinking"} items before the answer; only text items are the answer.
        text = "".join(item.get("text") or "" for item in content if _dig(item, "type") == "text")
        return LlmAnswer(text, self._finish_reason(body), _usage(body.get("usage")))

    def send_streaming(self, call: LlmCall) -> Iterator[str | LlmAnswer]:
        parts: list[str] = []
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
            elif kind == "message-end":
                end = chunk["delta"] if isinstance(chunk.get("delta"), dict) else {}
                yield LlmAnswer("".join(parts), self._finish_reason(end), _usage(end.get("usage")))
                return
        raise TruncatedOutput(f"{self.settings.name} ended its stream without message-end")

    def _payload(self, call: LlmCall, stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": call.model,
            "messages": [{"role": m.role, "content": m.content} for m in call.messages],
            "max_tokens": call.max_tokens,
            "stream": stream,  # the SDK always sends it; the reference marks it required
        }
        if call.temperature is not None:
            payload["temperature"] = call.temperature
        if call.json_schema is not None:
            payload["response_format"] = {"type": "json_object", "json_schema": call.json_schema}
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


def _dig(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...``, or None as soon as a level is missing or not an object."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _usage(usage: Any) -> dict[str, int]:
    """Tokens the model read and wrote (``usage.tokens``), else the billed ones (``usage.billed_units``)."""
    counts = _dig(usage, "tokens") or _dig(usage, "billed_units")
    return usage_of(_dig(counts, "input_tokens"), _dig(counts, "output_tokens"))
