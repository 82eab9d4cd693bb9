"""A fake Cohere API v2: ``POST /v2/chat``, plain and streaming (SSE).

Checked like the real API (docs.cohere.com/reference/chat and the generated SDK cohere-ai/cohere-python):
``Authorization: Bearer``, the ``V2ChatRequest`` fields, messages with roles ``system``/``user``/``assistant``/
``tool`` whose content is a string or a list of text items, ``response_format`` as ``text`` or ``json_object``
with an optional ``json_schema``. Errors are Cohere's ``{"message": ...}``. A stream names each event twice, as
Cohere does: in the SSE ``event:`` line and in the JSON ``type``; it sends one ``content-delta`` per word and
ends with ``message-end`` carrying ``finish_reason`` and usage (and ``error`` when the finish is ERROR).

Tool use per the guides "Tool use" and "Streaming for tool use": ``tools`` are ``{"type": "function",
"function": {"name", "description", "parameters"}}``, ``tool_choice`` is REQUIRED or NONE and needs tools, an
assistant turn may carry ``tool_calls`` (then content may be left out) and a ``tool`` turn must name by
``tool_call_id`` a call made before it; ``stop_sequences`` (at most 5), ``p`` (0.01-0.99) and the penalties
(0-1) are range-checked. Given tools (and no NONE), the fake calls the first one with an argument per declared
property and finishes TOOL_CALL, unless the conversation ends with tool results, which it quotes in text;
streamed, the call is ``tool-plan-delta``, ``tool-call-start`` (id, name), ``tool-call-delta`` per piece of its
arguments and ``tool-call-end``.
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
        #: ``usage.cached_tokens`` of the next answers, when set.
        self.cached_tokens: int | None = None
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
        texts = [_text(message.get("content", "")) or "" for message in body["messages"]]
        prompt = "\n".join(texts)
        users = [text for message, text in zip(body["messages"], texts, strict=True) if message["role"] == "user"]
        is_report = (body.get("response_format") or {}).get("type") == "json_object"
        default = default_report(prompt, self.name) if is_report else f"{self.name} says: {users[-1] if users else ''}"
        results = [m for m in body["messages"] if m["role"] == "tool"]
        if results and body["messages"][-1]["role"] == "tool":
            default = f"{self.name} read the tools: " + " ".join(_text(m["content"]) or "" for m in results)
        content = self.script.next_content(default)
        call = _tool_call(body)
        finish = self.script.next_finish("TOOL_CALL" if call else "COMPLETE")
        tokens = {"input_tokens": len(prompt) // 4 + 1, "output_tokens": len(content) // 4}
        usage: dict[str, Any] = {
            "billed_units": dict(tokens),
            "tokens": {**tokens, "input_tokens": tokens["input_tokens"] + 180},
        }
        if self.cached_tokens is not None:
            usage["cached_tokens"] = self.cached_tokens
        if call is not None:
            return self._call(call, usage, bool(body.get("stream")))
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

    def _call(self, call: dict[str, Any], usage: dict[str, Any], stream: bool) -> Reply:
        plan = f"I will call {call['function']['name']}."
        if not stream:
            message = {"role": "assistant", "tool_plan": plan, "tool_calls": [call]}
            return Reply(
                200, {"id": "fake-cohere-id", "finish_reason": "TOOL_CALL", "message": message, "usage": usage}
            )
        start = {**call, "function": {**call["function"], "arguments": ""}}
        events = [
            _event("message-start", id="fake-cohere-id", delta={"message": {"role": "assistant"}}),
            *(_event("tool-plan-delta", delta={"message": {"tool_plan": piece}}) for piece in words(plan)),
            _event("tool-call-start", index=0, delta={"message": {"tool_calls": start}}),
            *(
                _event(
                    "tool-call-delta", index=0, delta={"message": {"tool_calls": {"function": {"arguments": piece}}}}
                )
                for piece in words(call["function"]["arguments"])
            ),
            _event("tool-call-end", index=0),
            _event("message-end", delta={"finish_reason": "TOOL_CALL", "usage": usage}),
        ]
        return Reply(events=list(events))

    def _events(self, content: str, finish: str, usage: dict[str, Any]) -> list[tuple[str | None, str]]:
        event = _event

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
        called: set[str] = set()
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                return f"messages[{index}].role must be one of {sorted(ROLES)}"
            problem = _check_turn(message, index, called)
            if problem:
                return problem
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
        return _check_tools(body) or _check_sampling(body)


def _check_turn(message: dict[str, Any], index: int, called: set[str]) -> str | None:
    fields = {"role", "content", "tool_calls", "tool_plan", "tool_call_id", "citations"}
    if set(message) - fields:
        return f"messages[{index}]: unknown field {sorted(set(message) - fields)[0]}"
    calls = message.get("tool_calls")
    if calls is not None:
        if message["role"] != "assistant" or not isinstance(calls, list):
            return f"messages[{index}].tool_calls: only assistant messages carry a list of tool calls"
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(call.get("id"), str) or call.get("type") != "function":
                return f"messages[{index}].tool_calls: each needs id, type function and function"
            if not isinstance(function.get("name"), str) or not isinstance(function.get("arguments"), str):
                return f"messages[{index}].tool_calls: function needs name and arguments as a JSON string"
            called.add(call["id"])
    if message["role"] == "tool" and message.get("tool_call_id") not in called:
        return f"messages[{index}].tool_call_id must name a tool call made earlier in the conversation"
    if "content" not in message and calls is None:
        return f"messages[{index}].content is required"
    if "content" in message and _text(message["content"]) is None:
        return f"messages[{index}].content must be a string or a list of text content items"
    return None


def _check_tools(body: dict[str, Any]) -> str | None:
    tools = body.get("tools")
    for index, tool in enumerate(tools or ()):
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(function, dict) or set(tool) - {"type", "function"}:
            return f"tools[{index}] must be {{type: function, function: {{...}}}}"
        if not isinstance(function.get("name"), str) or set(function) - {"name", "description", "parameters"}:
            return f"tools[{index}].function needs a name and takes only description and parameters"
        if "parameters" in function and not isinstance(function["parameters"], dict):
            return f"tools[{index}].function.parameters must be a JSON schema object"
    if "tool_choice" in body and (body["tool_choice"] not in {"REQUIRED", "NONE"} or not tools):
        return "tool_choice must be REQUIRED or NONE, and needs tools"
    return None


def _check_sampling(body: dict[str, Any]) -> str | None:
    stops = body.get("stop_sequences", [])
    if not isinstance(stops, list) or len(stops) > 5 or not all(isinstance(stop, str) for stop in stops):
        return "stop_sequences must be a list of at most 5 strings"
    if "p" in body and not (isinstance(body["p"], int | float) and 0.01 <= body["p"] <= 0.99):
        return "p must be between 0.01 and 0.99"
    for name in ("frequency_penalty", "presence_penalty"):
        if name in body and not (isinstance(body[name], int | float) and 0 <= body[name] <= 1):
            return f"{name} must be between 0 and 1"
    if "seed" in body and not isinstance(body["seed"], int):
        return "seed must be an integer"
    return None


def _tool_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """The call the fake makes (see the module's docstring)."""
    tools = body.get("tools") or []
    if not tools or body.get("tool_choice") == "NONE" or body["messages"][-1]["role"] == "tool":
        return None
    function = tools[0]["function"]
    properties = (function.get("parameters") or {}).get("properties") or {}
    arguments = json.dumps({prop: f"{prop} value" for prop in properties})
    return {
        "id": "fake_cohere_call_0",
        "type": "function",
        "function": {"name": function["name"], "arguments": arguments},
    }


def _event(kind: str, **fields: Any) -> tuple[str, str]:
    return kind, json.dumps({"type": kind, **fields})


def _text(content: Any) -> str | None:
    """A message's text: a string, or the text items of a content list; None when it is neither."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(i, dict) and i.get("type") == "text" for i in content):
        return "".join(str(item.get("text", "")) for item in content)
    return None
