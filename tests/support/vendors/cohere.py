"""A fake Cohere API v2: ``POST /v2/chat``, plain and streaming (SSE).

Checked like the real API (docs.cohere.com/reference/chat and the generated SDK cohere-ai/cohere-python):
``Authorization: Bearer``, the ``V2ChatRequest`` fields, messages with roles ``system``/``user``/``assistant``/
``tool`` whose content is a string or a list of text items, ``response_format`` as ``text`` or ``json_object``
with an optional ``json_schema``. Errors are Cohere's ``{"message": ...}``. A stream names each event twice, as
Cohere does: in the SSE ``event:`` line and in the JSON ``type``; it sends one ``content-delta`` per word and
ends with ``message-end`` carrying ``finish_reason`` and usage (and ``error`` when the finish is ERROR).
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.fake_http import FakeServer, Reply, Request
from tests.support.vendors.common import Script, default_report, words

#: The body of ``POST /v2/chat`` (``V2ChatRequest`` / ``V2ChatStreamRequest``).
REQUEST_FIELDS = {
    "stream",
    "model",
    "messages",
    "tools",
    "strict_tools",
    "documents",
    "citation_options",
    "response_format",
    "safety_mode",
    "max_tokens",
    "stop_sequences",
    "temperature",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "k",
    "p",
    "logprobs",
    "tool_choice",
    "thinking",
    "priority",
}
ROLES = {"system", "user", "assistant", "tool"}


def error(status: int, message: str) -> Reply:
    return Reply(status, {"message": message})


class FakeCohere(FakeServer):
    def __init__(self, api_key: str, name: str = "fake-cohere") -> None:
        super().__init__()
        self.api_key = api_key
        self.name = name
        self.script = Script()
        #: When set, the answer starts with a reasoning model's ``thinking`` item, which is not part of the text.
        self.thinking: str | None = None
        self.route("POST", "/v2/chat", self._chat)

    @property
    def base_url(self) -> str:
        return self.url

    def _chat(self, request: Request) -> Reply:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error(401, "invalid api token")
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            return error(400, "invalid request: Content-Type must be application/json")
        body = request.json()
        problem = self._check(body)
        if problem:
            return error(400, f"invalid request: {problem}")
        texts = [_text(message["content"]) or "" for message in body["messages"]]
        prompt = "\n".join(texts)
        users = [text for message, text in zip(body["messages"], texts, strict=True) if message["role"] == "user"]
        is_report = (body.get("response_format") or {}).get("type") == "json_object"
        default = default_report(prompt, self.name) if is_report else f"{self.name} says: {users[-1] if users else ''}"
        content = self.script.next_content(default)
        finish = self.script.next_finish("COMPLETE")
        tokens = {"input_tokens": len(prompt) // 4 + 1, "output_tokens": len(content) // 4}
        usage = {"billed_units": dict(tokens), "tokens": {**tokens, "input_tokens": tokens["input_tokens"] + 180}}
        if body.get("stream"):
            return Reply(events=self._events(content, finish, usage))
        items = [{"type": "thinking", "thinking": self.thinking}] if self.thinking else []
        return Reply(
            200,
            {
                "id": "fake-cohere-id",
                "finish_reason": finish,
                "message": {"role": "assistant", "content": [*items, {"type": "text", "text": content}]},
                "usage": usage,
            },
        )

    def _events(self, content: str, finish: str, usage: dict[str, Any]) -> list[tuple[str | None, str]]:
        def event(kind: str, **fields: Any) -> tuple[str, str]:
            return kind, json.dumps({"type": kind, **fields})

        def delta(content: dict[str, str]) -> dict[str, Any]:
            return {"message": {"content": content}}

        events = [event("message-start", id="fake-cohere-id", delta={"message": {"role": "assistant"}})]
        index = 0
        if self.thinking:
            events.append(event("content-start", index=0, delta=delta({"type": "thinking", "thinking": ""})))
            events.append(event("content-delta", index=0, delta=delta({"thinking": self.thinking})))
            events.append(event("content-end", index=0))
            index = 1
        events.append(event("content-start", index=index, delta=delta({"type": "text", "text": ""})))
        events += [event("content-delta", index=index, delta=delta({"text": piece})) for piece in words(content)]
        events.append(event("content-end", index=index))
        end: dict[str, Any] = {"finish_reason": finish, "usage": usage}
        if finish == "ERROR":
            end["error"] = "internal error during generation"
        events.append(event("message-end", delta=end))
        return list(events)

    @staticmethod
    def _check(body: Any) -> str | None:
        if not isinstance(body, dict):
            return "the request body must be a JSON object"
        unknown = sorted(set(body) - REQUEST_FIELDS)
        if unknown:
            return f"unknown field: parameter {unknown[0]} is not a valid field"
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "model is required"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages must be a non-empty list"
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                return f"messages[{index}].role must be one of {sorted(ROLES)}"
            if _text(message.get("content")) is None:
                return f"messages[{index}].content must be a string or a list of text content items"
        if "stream" in body and not isinstance(body["stream"], bool):
            return "stream must be a boolean"
        if "max_tokens" in body and (not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1):
            return "max_tokens must be a positive integer"
        temperature = body.get("temperature", 0)
        if not isinstance(temperature, int | float) or temperature < 0:
            return "temperature must be a non-negative number"
        response_format = body.get("response_format")
        if response_format is not None:
            if not isinstance(response_format, dict) or response_format.get("type") not in {"text", "json_object"}:
                return "response_format.type must be 'text' or 'json_object'"
            extra = set(response_format) - (
                {"type", "json_schema"} if response_format["type"] == "json_object" else {"type"}
            )
            if extra:
                return f"response_format does not accept {sorted(extra)[0]} with type {response_format['type']}"
            if "json_schema" in response_format and not isinstance(response_format["json_schema"], dict):
                return "response_format.json_schema must be a JSON schema object"
        return None


def _text(content: Any) -> str | None:
    """A message's text: a string, or the text items of a content list; None when it is neither."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(i, dict) and i.get("type") == "text" for i in content):
        return "".join(str(item.get("text", "")) for item in content)
    return None
