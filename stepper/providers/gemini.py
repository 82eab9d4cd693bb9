"""Google's Gemini API (``generativelanguage.googleapis.com/v1beta``): ``generateContent`` and its SSE stream.

The key travels in the ``x-goog-api-key`` header, never as ``?key=``: URLs end up in logs. Reports use
``responseSchema``, the OpenAPI subset every Gemini model accepts (``responseJsonSchema`` takes full JSON
Schema but only on newer models), so JSON Schema keywords outside that subset are dropped on the way out.
A stream has no ``[DONE]``: it simply ends, and only a chunk carrying ``finishReason`` says it was complete.

Chat features are mapped per the v1beta reference (ai.google.dev/api/generate-content, /api/caching#Tool):
``tools`` become ``functionDeclarations``, ``tool_choice`` ``toolConfig.functionCallingConfig`` (``auto`` AUTO,
``none`` NONE, ``required`` ANY, a named function ANY with ``allowedFunctionNames``), an assistant's
``tool_calls`` ``functionCall`` parts of a ``model`` turn, and ``tool`` messages ``functionResponse`` parts of
a ``user`` turn (a result that is a JSON object is the response itself, any other text ``{"output": text}``).
A ``functionCall`` comes back whole (streamed too) with its arguments parsed; one without an ``id`` gets a
stable one. ``stop``, ``top_p``, ``seed`` and the penalties go into ``generationConfig``; ``user`` has no
counterpart and is left out. ``logprobs`` is ``responseLogprobs`` (``top_logprobs`` is ``logprobs``), and the
candidate's ``logprobsResult`` (``chosenCandidates``, ``topCandidates``) comes back in OpenAI's shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from stepper.errors import ContentRejected, ProviderError, RetryableError, TruncatedOutput, UnsupportedInput
from stepper.providers.gemini_request import request_body
from stepper.providers.http import HttpClient, parse_retry_after
from stepper.providers.llm.base import LlmProvider, finish_reason
from stepper.providers.llm.call import FinishReason, LlmAnswer, LlmCall, ToolCallDelta, tool_call_id, usage_of
from stepper.providers.transport import Answer
from stepper.schemas.chat import ToolCall

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


class GoogleHttpClient(HttpClient):
    """Reads Google's retry hint: a 429 carries google.rpc.RetryInfo ``{"retryDelay": "36.5s"}`` in its
    details rather than a Retry-After header. (What its errors mean, ``API_KEY_INVALID`` in a 400 included,
    is read by :mod:`stepper.providers.vendor_errors`.)"""

    def error_for(self, response: Answer) -> ProviderError:
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
    features = frozenset({"tools", "response_format", "stop", "logprobs"})

    def send(self, call: LlmCall) -> LlmAnswer:
        body = self.http.post_json(self._path(call, "generateContent"), self._payload(call), self.auth_headers())
        candidate = self._candidate(body)
        if candidate is None:
            raise TruncatedOutput(f"{self.settings.name} answered without candidates")
        calls = [self._tool_call(index, part) for index, part in enumerate(_function_calls(candidate))]
        finish = self._finish_reason(candidate.get("finishReason"))
        tokens = _logprobs(candidate) if call.logprobs else None
        return LlmAnswer(_text(candidate), finish, _usage(body), calls, {"content": tokens} if call.logprobs else None)

    def send_streaming(self, call: LlmCall) -> Iterator[str | ToolCallDelta | LlmAnswer]:
        path = self._path(call, "streamGenerateContent") + "?alt=sse"
        parts: list[str] = []
        calls: list[ToolCall] = []
        tokens: list[dict[str, Any]] = []
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
            tokens.extend(_logprobs(candidate))
            for part in _function_calls(candidate):  # each arrives whole: one fragment per call
                whole = self._tool_call(len(calls), part)
                calls.append(whole)
                yield ToolCallDelta(
                    len(calls) - 1, whole.id, whole.function.name, whole.function.arguments, whole.extra_content
                )
            if candidate.get("finishReason"):
                finish = self._finish_reason(candidate["finishReason"])
        if finish is None:
            raise TruncatedOutput(f"{self.settings.name} ended its stream before a chunk with finishReason")
        yield LlmAnswer("".join(parts), finish, usage, calls, {"content": tokens} if call.logprobs else None)

    def _payload(self, call: LlmCall) -> dict[str, Any]:
        try:
            return request_body(call)
        except ValueError as exc:
            raise UnsupportedInput(f"{self.settings.name} {exc}") from None

    def _tool_call(self, index: int, part: dict[str, Any]) -> ToolCall:
        """A ``functionCall`` part as an OpenAI tool call: its ``args`` object as JSON text, and the part's
        ``thoughtSignature`` kept to be sent back (see ``ToolCall.extra_content``)."""
        call = part["functionCall"]
        name, args = call.get("name"), call.get("args") or {}
        if not isinstance(name, str) or not isinstance(args, dict):
            raise TruncatedOutput(f"{self.settings.name} answered a malformed functionCall")
        arguments = json.dumps(args, separators=(",", ":"))
        call_id = call.get("id") if isinstance(call.get("id"), str) else None
        signature = part.get("thoughtSignature")
        return ToolCall(
            id=call_id or tool_call_id(self.settings.name, index, name, arguments),
            function={"name": name, "arguments": arguments},
            extra_content={"google": {"thought_signature": signature}} if isinstance(signature, str) else None,
        )

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


def _logprobs(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    """A candidate's ``logprobsResult`` as OpenAI's ``logprobs.content``: a token per decoding step, with the
    step's top candidates."""
    result = candidate.get("logprobsResult") or {}
    chosen = result.get("chosenCandidates") or []
    tops = result.get("topCandidates") or []

    def token(item: dict[str, Any]) -> dict[str, Any]:
        text = str(item.get("token", ""))
        return {"token": text, "logprob": float(item.get("logProbability", 0.0)), "bytes": list(text.encode())}

    return [
        {
            **token(item),
            "top_logprobs": [token(top) for top in (tops[step] if step < len(tops) else {}).get("candidates") or ()],
        }
        for step, item in enumerate(chosen)
    ]


def _function_calls(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    parts = (candidate.get("content") or {}).get("parts") or ()
    return [part for part in parts if isinstance(part, dict) and isinstance(part.get("functionCall"), dict)]


def _text(candidate: dict[str, Any]) -> str:
    """The answer's text; thought summaries (``"thought": true``) are the model's notes, not its answer."""
    parts = (candidate.get("content") or {}).get("parts") or ()
    return "".join(part["text"] for part in parts if isinstance(part.get("text"), str) and not part.get("thought"))


def _usage(body: dict[str, Any]) -> dict[str, int]:
    """Output tokens include thinking tokens: Google bills them as output."""
    meta = body.get("usageMetadata") or {}
    output = [meta[key] for key in ("candidatesTokenCount", "thoughtsTokenCount") if isinstance(meta.get(key), int)]
    return usage_of(meta.get("promptTokenCount"), sum(output) if output else None, meta.get("cachedContentTokenCount"))


def _error_body(response: Answer) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    if isinstance(body, list) and body:  # non-SSE streams report errors as a one-element array
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}
