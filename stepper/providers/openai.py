"""Any OpenAI-compatible ``/v1/chat/completions`` server: OpenAI itself, vLLM, Ollama, a self-hosted Mistral.

Declare several side by side under their own names, each with its base URL, key variable and models.
Options: ``max_tokens_field`` (``max_tokens``, or ``max_completion_tokens`` for OpenAI's reasoning models),
``response_format`` (``json_schema``, or ``json_object`` for servers without structured outputs).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from stepper.errors import ContentRejected, TruncatedOutput
from stepper.providers.llm.base import FinishReason, LlmAnswer, LlmCall, LlmProvider, usage_of

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "stop",
    "function_call": "stop",
}


class OpenAIProvider(LlmProvider):
    default_base_url = "https://api.openai.com/v1"

    def send(self, call: LlmCall) -> LlmAnswer:
        body = self.http.post_json("/chat/completions", self._payload(call, stream=False), self.auth_headers())
        try:
            choice = body["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            raise TruncatedOutput(f"{self.settings.name} answered without choices[0].message") from None
        if message.get("refusal"):
            raise ContentRejected(f"{self.settings.name} refused: {message['refusal'][:200]}")
        usage = body.get("usage") or {}
        return LlmAnswer(
            message.get("content") or "",
            self._finish_reason(choice.get("finish_reason")),
            usage_of(usage.get("prompt_tokens"), usage.get("completion_tokens")),
        )

    def send_streaming(self, call: LlmCall) -> Iterator[str | LlmAnswer]:
        parts: list[str] = []
        finish: FinishReason | None = None
        usage: dict[str, int] = {}
        for event in self.http.stream(
            "POST", "/chat/completions", self._payload(call, stream=True), self.auth_headers()
        ):
            if event.data == "[DONE]":
                if finish is None:
                    break
                yield LlmAnswer("".join(parts), finish, usage)
                return
            chunk = event.json_object(self.settings.name)
            if chunk.get("usage"):
                usage = usage_of(chunk["usage"].get("prompt_tokens"), chunk["usage"].get("completion_tokens"))
            for choice in chunk.get("choices") or ():
                delta = (choice.get("delta") or {}).get("content")
                if delta:
                    parts.append(delta)
                    yield delta
                if choice.get("finish_reason"):
                    finish = self._finish_reason(choice["finish_reason"])
        raise TruncatedOutput(f"{self.settings.name} ended its stream without finish_reason and [DONE]")

    def _payload(self, call: LlmCall, stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": call.model,
            "messages": [{"role": m.role, "content": m.content} for m in call.messages],
            self.settings.options.get("max_tokens_field", "max_tokens"): call.max_tokens,
        }
        if call.temperature is not None:
            payload["temperature"] = call.temperature
        if call.json_schema is not None:
            if self.settings.options.get("response_format", "json_schema") == "json_object":
                payload["response_format"] = {"type": "json_object"}
            else:
                payload["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "commit_report", "schema": call.json_schema, "strict": True},
                }
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        return payload

    def _finish_reason(self, reason: Any) -> FinishReason:
        if reason not in FINISH_REASONS:
            raise TruncatedOutput(f"{self.settings.name} finished with unexpected reason {reason!r}")
        return FINISH_REASONS[reason]
