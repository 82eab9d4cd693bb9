"""Google's Gemini API (``generativelanguage.googleapis.com/v1beta``): ``generateContent`` and its SSE stream.

The key travels in the ``x-goog-api-key`` header, never as ``?key=``: URLs end up in logs. Reports use
``responseSchema``, the OpenAPI subset every Gemini model accepts (``responseJsonSchema`` takes full JSON
Schema but only on newer models), so JSON Schema keywords outside that subset are dropped on the way out.
A stream has no ``[DONE]``: it simply ends, and only a chunk carrying ``finishReason`` says it was complete.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import requests

from stepper.errors import ContentRejected, ProviderError, RetryableError, TruncatedOutput, UnsupportedInput
from stepper.providers.http import HttpClient, parse_retry_after
from stepper.providers.llm.base import FinishReason, LlmAnswer, LlmCall, LlmProvider, finish_reason, usage_of

FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys(
        ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"), "content_filter"
    ),
}
#: Finishes that leave no usable answer (the ``FinishReason`` enum of the v1beta reference); any other
#: reason stepper does not know yet is served, and logged once.
NOT_AN_ANSWER = frozenset(
    {
        None,
        "FINISH_REASON_UNSPECIFIED",
        "OTHER",
        "LANGUAGE",
        "MALFORMED_FUNCTION_CALL",
        "UNEXPECTED_TOOL_CALL",
        "TOO_MANY_TOOL_CALLS",
    }
)
#: Keywords of Gemini's ``Schema`` (an OpenAPI 3.0 subset) copied as they are; ``type`` is upper-cased to its enum.
SCHEMA_KEYWORDS = frozenset({"description", "enum", "format", "nullable", "required", "minItems", "maxItems"})
ROLES = {"user": "user", "assistant": "model"}


class GoogleHttpClient(HttpClient):
    """Reads Google's retry hint: a 429 carries google.rpc.RetryInfo ``{"retryDelay": "36.5s"}`` in its
    details rather than a Retry-After header. (What its errors mean, ``API_KEY_INVALID`` in a 400 included,
    is read by :mod:`stepper.providers.vendor_errors`.)"""

    def error_for(self, response: requests.Response) -> ProviderError:
        error = super().error_for(response)
        details = [item for item in _error_body(response).get("details") or () if isinstance(item, dict)]
        delays = [item["retryDelay"] for item in details if isinstance(item.get("retryDelay"), str)]
        if delays and isinstance(error, RetryableError) and error.retry_after_s is None:
            return type(error)(str(error), parse_retry_after(delays[0].removesuffix("s")))
        return error


class GeminiProvider(LlmProvider):
    default_base_url = "https://generativelanguage.googleapis.com/v1beta"
    http_client = GoogleHttpClient
    key_header, key_prefix = "x-goog-api-key", ""  # a header, never ?key=: URLs end up in logs

    def send(self, call: LlmCall) -> LlmAnswer:
        body = self.http.post_json(self._path(call, "generateContent"), self._payload(call), self.auth_headers())
        candidate = self._candidate(body)
        if candidate is None:
            raise TruncatedOutput(f"{self.settings.name} answered without candidates")
        return LlmAnswer(_text(candidate), self._finish_reason(candidate.get("finishReason")), _usage(body))

    def send_streaming(self, call: LlmCall) -> Iterator[str | LlmAnswer]:
        path = self._path(call, "streamGenerateContent") + "?alt=sse"
        parts: list[str] = []
        finish: FinishReason | None = None
        usage: dict[str, int] = {}
        for event in self.http.stream("POST", path, self._payload(call), self.auth_headers()):
            chunk = event.json_object(self.settings.name)
            candidate = self._candidate(chunk)
            usage = _usage(chunk) or usage
            if candidate is None:
                continue
            if text := _text(candidate):
                parts.append(text)
                yield text
            if candidate.get("finishReason"):
                finish = self._finish_reason(candidate["finishReason"])
        if finish is None:
            raise TruncatedOutput(f"{self.settings.name} ended its stream before a chunk with finishReason")
        yield LlmAnswer("".join(parts), finish, usage)

    def _payload(self, call: LlmCall) -> dict[str, Any]:
        contents: list[dict[str, Any]] = []
        for message in call.messages:
            if message.role == "system":
                continue
            role = ROLES[message.role]
            if contents and contents[-1]["role"] == role:  # one turn per speaker, as multi-turn chat expects
                contents[-1]["parts"].append({"text": message.content})
            else:
                contents.append({"role": role, "parts": [{"text": message.content}]})
        if not contents:
            raise UnsupportedInput(f"{self.settings.name} needs at least one user or assistant message")
        config: dict[str, Any] = {"maxOutputTokens": call.max_tokens}
        if call.temperature is not None:
            config["temperature"] = call.temperature
        if call.json_schema is not None:
            config["responseMimeType"] = "application/json"
            config["responseSchema"] = gemini_schema(call.json_schema)
        payload: dict[str, Any] = {"contents": contents, "generationConfig": config}
        if system := "\n\n".join(m.content for m in call.messages if m.role == "system"):
            payload["systemInstruction"] = {"parts": [{"text": system}]}
        return payload

    def _path(self, call: LlmCall, method: str) -> str:
        return f"/models/{quote(call.model.removeprefix('models/'), safe='')}:{method}"

    def _candidate(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The first candidate; a prompt blocked before generation has none and says why in promptFeedback."""
        candidates = body.get("candidates")
        if candidates and isinstance(candidates[0], dict):
            return candidates[0]
        if reason := (body.get("promptFeedback") or {}).get("blockReason"):
            raise ContentRejected(f"{self.settings.name} blocked the prompt ({reason})")
        return None

    def _finish_reason(self, reason: Any) -> FinishReason:
        return finish_reason(self.settings.name, reason, FINISH_REASONS, NOT_AN_ANSWER)


def gemini_schema(node: dict[str, Any]) -> dict[str, Any]:
    """A self-contained JSON schema as Gemini's ``Schema``: keywords it rejects (``additionalProperties``,
    ``title``, ``default``...) dropped, property names kept, and ``propertyOrdering`` so fields come out in order."""
    schema: dict[str, Any] = {key: value for key, value in node.items() if key in SCHEMA_KEYWORDS}
    if isinstance(node.get("type"), str):
        schema["type"] = node["type"].upper()
    if isinstance(node.get("items"), dict):
        schema["items"] = gemini_schema(node["items"])
    if isinstance(node.get("anyOf"), list):
        schema["anyOf"] = [gemini_schema(option) for option in node["anyOf"]]
    if isinstance(node.get("properties"), dict):
        schema["properties"] = {name: gemini_schema(sub) for name, sub in node["properties"].items()}
        schema["propertyOrdering"] = list(node["properties"])
    return schema


def _text(candidate: dict[str, Any]) -> str:
    """The answer's text; thought summaries (``"thought": true``) are the model's notes, not its answer."""
    parts = (candidate.get("content") or {}).get("parts") or ()
    return "".join(part["text"] for part in parts if isinstance(part.get("text"), str) and not part.get("thought"))


def _usage(body: dict[str, Any]) -> dict[str, int]:
    """Output tokens include thinking tokens: Google bills them as output."""
    meta = body.get("usageMetadata") or {}
    output = [meta[key] for key in ("candidatesTokenCount", "thoughtsTokenCount") if isinstance(meta.get(key), int)]
    return usage_of(meta.get("promptTokenCount"), sum(output) if output else None)


def _error_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    if isinstance(body, list) and body:  # non-SSE streams report errors as a one-element array
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}
