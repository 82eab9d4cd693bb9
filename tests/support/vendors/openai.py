"""A fake OpenAI-compatible server: ``POST /v1/chat/completions``, plain and streaming (SSE, ``[DONE]``)."""

from __future__ import annotations

import json
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
}
ROLES = {"system", "developer", "user", "assistant"}


def error(status: int, message: str, kind: str = "invalid_request_error") -> Reply:
    return Reply(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})


class FakeOpenAI(FakeServer):
    def __init__(self, api_key: str, name: str = "fake-openai") -> None:
        super().__init__()
        self.api_key = api_key
        self.name = name
        self.script = Script()
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
        prompt = "\n".join(message["content"] for message in body["messages"])
        is_report = "response_format" in body
        default = (
            default_report(prompt, self.name) if is_report else f"{self.name} says: {body['messages'][-1]['content']}"
        )
        content = self.script.next_content(default)
        finish = self.script.next_finish("stop")
        usage = {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(content) // 4}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        created = int(time.time())
        if body.get("stream"):
            return Reply(events=self._events(body, content, finish, usage, created))
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
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
                "usage": usage,
            },
        )

    def _events(
        self, body: dict[str, Any], content: str, finish: str, usage: dict[str, int], created: int
    ) -> list[tuple[str | None, str]]:
        def chunk(delta: dict[str, Any], finish_reason: str | None) -> tuple[None, str]:
            return None, json.dumps(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": body["model"],
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
                }
            )

        events: list[tuple[str | None, str]] = [chunk({"role": "assistant", "content": ""}, None)]
        events += [chunk({"content": piece}, None) for piece in words(content)]
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
        for index, message in enumerate(messages):
            if (
                not isinstance(message, dict)
                or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)
            ):
                return f"Invalid value for 'messages[{index}]'"
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
        return None
