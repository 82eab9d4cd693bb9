"""A fake OpenAI server: ``POST /v1/chat/completions``, plain and streaming (SSE, ``[DONE]``).

Checked against OpenAI's API reference (platform.openai.com/docs/api-reference/chat/create and the streaming
chunk object): ``tools`` are ``{"type": "function", "function": {"name", "description", "parameters",
"strict"}}``; ``tool_choice`` is none/auto/required or names a declared function and needs tools; an assistant
message may carry ``tool_calls`` with null content; a ``tool`` message must answer, by ``tool_call_id``, a call
made before it; ``stop`` is a string or at most 4; ``top_logprobs`` needs ``logprobs``. Given tools (and no
``none``), the fake calls one (the named one, else the first) with an argument per declared property and
finishes ``tool_calls``, unless the conversation ends with tool results, which it quotes. Streamed, a call is a
first fragment (``index``, ``id``, ``type``, ``function.name``, empty arguments) then argument pieces.
"""

from __future__ import annotations

import json
import ssl
import time
from typing import Any

from tests.support.fake_http import FakeServer, Reply, Request
from tests.support.vendors.common import Script, default_report, words

ALLOWED_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "response_format",
    "stream",
    "stream_options",
    "top_p",
    "stop",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "user",
    "n",
}
ROLES = {"system", "developer", "user", "assistant", "tool"}


def error(status: int, message: str, kind: str = "invalid_request_error") -> Reply:
    return Reply(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})


class FakeOpenAI(FakeServer):
    def __init__(self, api_key: str, name: str = "fake-openai", tls: ssl.SSLContext | None = None) -> None:
        super().__init__(tls=tls)
        self.api_key = api_key
        self.name = name
        self.script = Script()
        #: ``usage.prompt_tokens_details.cached_tokens`` of the next answers, when set.
        self.cached_tokens: int | None = None
        self.route("POST", "/v1/chat/completions", self._completions)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def _completions(self, request: Request) -> Reply:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error(401, "Incorrect API key provided.", "invalid_api_key")
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            return error(400, "Content-Type must be application/json")
        body = request.json()
        problem = self._check(body)
        if problem:
            return error(400, problem)
        prompt = "\n".join(message.get("content") or "" for message in body["messages"])
        is_report = "response_format" in body
        last = body["messages"][-1]
        default = default_report(prompt, self.name) if is_report else f"{self.name} says: {last['content']}"
        if last["role"] == "tool":
            results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
            default = f"{self.name} read the tools: " + " ".join(results)
        content = self.script.next_content(default)
        call = _tool_call(body)
        finish = self.script.next_finish("tool_calls" if call else "stop")
        usage: dict[str, Any] = {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(content) // 4}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if self.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens, "audio_tokens": 0}
        created = int(time.time())
        if body.get("stream"):
            return Reply(events=self._events(body, None if call else content, finish, usage, call))
        message: dict[str, Any] = {"role": "assistant", "content": None if call else content, "refusal": None}
        if call:
            message["tool_calls"] = [call]
        return Reply(
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": created,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": _logprobs(content) if body.get("logprobs") and not call else None,
                        "finish_reason": finish,
                    }
                ],
                "usage": usage,
            },
        )

    def _events(
        self,
        body: dict[str, Any],
        content: str | None,
        finish: str,
        usage: dict[str, Any],
        call: dict[str, Any] | None,
    ) -> list[tuple[str | None, str]]:
        created = int(time.time())

        def chunk(
            delta: dict[str, Any], finish_reason: str | None, logprobs: dict[str, Any] | None = None
        ) -> tuple[None, str]:
            return None, json.dumps(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": body["model"],
                    "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}],
                }
            )

        events: list[tuple[str | None, str]] = [chunk({"role": "assistant", "content": None if call else ""}, None)]
        if call is not None:
            first = {
                "index": 0,
                "id": call["id"],
                "type": "function",
                "function": {**call["function"], "arguments": ""},
            }
            events.append(chunk({"tool_calls": [first]}, None))
            events += [
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None)
                for piece in words(call["function"]["arguments"])
            ]
        for piece in words(content) if content is not None else ():
            events.append(chunk({"content": piece}, None, _logprobs(piece) if body.get("logprobs") else None))
        events.append(chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(
                (
                    None,
                    json.dumps(
                        {
                            "id": "chatcmpl-fake",
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": body["model"],
                            "choices": [],
                            "usage": usage,
                        }
                    ),
                )
            )
        events.append((None, "[DONE]"))
        return events

    @staticmethod
    def _check(body: Any) -> str | None:
        if not isinstance(body, dict):
            return "The request body must be a JSON object."
        unknown = set(body) - ALLOWED_FIELDS
        if unknown:
            return f"Unrecognized request argument supplied: {sorted(unknown)[0]}"
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "you must provide a model parameter"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "'messages' must be a non-empty array"
        called: set[str] = set()
        for index, message in enumerate(messages):
            problem = _check_message(message, index, called)
            if problem:
                return problem
        for field in ("max_tokens", "max_completion_tokens"):
            if field in body and (not isinstance(body[field], int) or body[field] < 1):
                return f"Invalid '{field}': must be a positive integer"
        if "temperature" in body and not (
            isinstance(body["temperature"], int | float) and 0 <= body["temperature"] <= 2
        ):
            return "Invalid 'temperature': must be between 0 and 2"
        response_format = body.get("response_format")
        if response_format is not None:
            kind = response_format.get("type") if isinstance(response_format, dict) else None
            if kind == "json_schema":
                schema = response_format.get("json_schema") or {}
                if not isinstance(schema.get("name"), str) or not isinstance(schema.get("schema"), dict):
                    return "response_format.json_schema needs a name and a schema"
            elif kind not in {"json_object", "text"}:
                return "Invalid 'response_format.type'"
        if "stream_options" in body and not body.get("stream"):
            return "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        return _check_tools(body) or _check_sampling(body)


def _check_message(message: Any, index: int, called: set[str]) -> str | None:
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        return f"Invalid value for 'messages[{index}]'"
    calls = message.get("tool_calls")
    for call in calls or ():
        function = call.get("function") if isinstance(call, dict) else None
        if call.get("type") != "function" or not isinstance(call.get("id"), str) or not isinstance(function, dict):
            return f"Invalid value for 'messages[{index}].tool_calls'"
        if not isinstance(function.get("name"), str) or not isinstance(function.get("arguments"), str):
            return f"Invalid value for 'messages[{index}].tool_calls': function needs a name and arguments text"
        called.add(call["id"])
    if calls is not None and message["role"] != "assistant":
        return f"Invalid parameter: 'messages[{index}].tool_calls' is only allowed on assistant messages"
    if message["role"] == "tool" and message.get("tool_call_id") not in called:
        return (
            f"Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
            f"'tool_calls' (messages[{index}])"
        )
    content = message.get("content")
    if not isinstance(content, str) and not (content is None and calls):
        return f"Invalid value for 'messages[{index}].content'"
    return None


def _check_tools(body: dict[str, Any]) -> str | None:
    names = []
    for index, tool in enumerate(body.get("tools") or ()):
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(function, dict):
            return f"Invalid value for 'tools[{index}]'"
        if set(function) - {"name", "description", "parameters", "strict"} or not isinstance(function.get("name"), str):
            return f"Invalid value for 'tools[{index}].function'"
        if "parameters" in function and function["parameters"].get("type") != "object":
            return (
                f"Invalid schema for function '{function['name']}': schema must be a JSON Schema of 'type: \"object\"'"
            )
        names.append(function["name"])
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if not names:
        return "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified."
    if isinstance(choice, dict):
        if choice.get("type") != "function" or (choice.get("function") or {}).get("name") not in names:
            return "Invalid value for 'tool_choice': the named function is not among the tools"
    elif choice not in {"none", "auto", "required"}:
        return "Invalid value for 'tool_choice'"
    return None


def _check_sampling(body: dict[str, Any]) -> str | None:
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str) and (not isinstance(stop, list) or len(stop) > 4):
        return "Invalid 'stop': a string or an array of at most 4 strings"
    if "top_logprobs" in body and not body.get("logprobs"):
        return "Invalid value for 'top_logprobs': 'logprobs' must be set to true"
    for name in ("presence_penalty", "frequency_penalty"):
        if name in body and not -2 <= body[name] <= 2:
            return f"Invalid '{name}': must be between -2 and 2"
    return None


def _tool_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """The call the fake makes (see the module's docstring)."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none" or (choice == "auto" and body["messages"][-1]["role"] == "tool"):
        return None
    named = choice["function"]["name"] if isinstance(choice, dict) else None
    function = next(tool["function"] for tool in tools if named in (None, tool["function"]["name"]))
    properties = (function.get("parameters") or {}).get("properties") or {}
    arguments = json.dumps({prop: f"{prop} value" for prop in properties})
    return {"id": "call_fake_0", "type": "function", "function": {"name": function["name"], "arguments": arguments}}


def _logprobs(text: str) -> dict[str, Any]:
    """OpenAI's ``logprobs`` object, a token per word."""
    return {
        "content": [
            {"token": piece, "logprob": -0.5, "bytes": list(piece.encode()), "top_logprobs": []}
            for piece in words(text)
        ],
        "refusal": None,
    }
