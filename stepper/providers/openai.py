"""Any OpenAI-compatible ``/v1/chat/completions`` server: OpenAI itself, vLLM, TGI, llama.cpp's server, Ollama,
LM Studio, LiteLLM and other proxies, a self-hosted Mistral.

Declare several side by side under their own names, each with its base URL, key variable and models.
Options: ``max_tokens_field`` (``max_tokens``, or ``max_completion_tokens`` for OpenAI's reasoning models),
``response_format`` (``json_schema``, or ``json_object`` for servers without structured outputs).

The servers answer in more spellings than OpenAI's reference (platform.openai.com/docs/api-reference/chat)
shows, and each is read here: finish reasons (TGI's ``eos_token``, ``stop_sequence``...), usage in the last
chunk or not at all, keep-alive comments, role-only and empty deltas, a stream that ends with ``[DONE]`` but
no finish reason or with a finish reason but no ``[DONE]``, and an error object in the middle of a 200
stream. An unknown finish reason on a well-formed answer is a success, logged once per server and reason.
Optional parameters a server refuses (``stream_options``, ``temperature``, ``response_format``, one of the
two token-limit fields) are left out from then on, fleet-wide (see ``LlmProvider.refusals``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from stepper.errors import ContentRejected, TruncatedOutput
from stepper.providers.llm.base import FinishReason, LlmAnswer, LlmCall, LlmProvider, finish_reason, usage_of

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "eos": "stop",  # TGI before its OpenAI layer, some proxies
    "eos_token": "stop",  # TGI
    "stop_sequence": "stop",  # TGI, proxies in front of Anthropic
    "end_turn": "stop",  # proxies in front of Anthropic
    "tool_calls": "stop",
    "function_call": "stop",
    "length": "length",
    "max_tokens": "length",  # proxies in front of Anthropic
    "model_length": "length",  # LiteLLM, Mistral
    "content_filter": "content_filter",
}
#: Token-limit fields: when a server refuses one, the other is sent.
TOKEN_LIMIT_FIELDS = ("max_tokens", "max_completion_tokens")


class OpenAIProvider(LlmProvider):
    default_base_url = "https://api.openai.com/v1"
    optional_parameters = frozenset({"stream_options", "temperature", "response_format", *TOKEN_LIMIT_FIELDS})

    def send(self, call: LlmCall) -> LlmAnswer:
        payload = self._payload(call, stream=False)
        with self.refusals(call.model, payload):
            body = self.http.post_json("/chat/completions", payload, self.auth_headers())
        if not isinstance(body, dict):
            raise TruncatedOutput(f"{self.settings.name} answered with JSON that is not an object")
        try:
            choice = body["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            raise TruncatedOutput(f"{self.settings.name} answered without choices[0].message") from None
        if message.get("refusal"):
            raise ContentRejected(f"{self.settings.name} refused: {message['refusal'][:200]}")
        return LlmAnswer(message.get("content") or "", self._finish_reason(choice.get("finish_reason")), _usage(body))

    def send_streaming(self, call: LlmCall) -> Iterator[str | LlmAnswer]:
        payload = self._payload(call, stream=True)
        parts: list[str] = []
        finish: FinishReason | None = None
        usage: dict[str, int] = {}
        with self.refusals(call.model, payload):
            for event in self.http.stream("POST", "/chat/completions", payload, self.auth_headers()):
                if event.data == "[DONE]":  # the server says the answer is whole, with or without a reason
                    yield LlmAnswer("".join(parts), finish or self._finish_reason(None), usage)
                    return
                chunk = event.json_object(self.settings.name)
                if "error" in chunk:  # vLLM, llama.cpp and proxies report a failure mid-stream this way
                    raise self.http.stream_error(chunk)
                usage = _usage(chunk) or usage
                for choice in chunk.get("choices") or ():
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        parts.append(delta)
                        yield delta
                    if choice.get("finish_reason"):
                        finish = self._finish_reason(choice["finish_reason"])
        if finish is None:
            raise TruncatedOutput(f"{self.settings.name} ended its stream without a finish_reason or [DONE]")
        yield LlmAnswer("".join(parts), finish, usage)  # no [DONE], but a finish reason: whole

    def _payload(self, call: LlmCall, stream: bool) -> dict[str, Any]:
        refused = self.refused(call.model)
        token_field = self.settings.options.get("max_tokens_field", "max_tokens")
        if token_field in refused:
            token_field = next(field for field in TOKEN_LIMIT_FIELDS if field != token_field)
        payload: dict[str, Any] = {
            "model": call.model,
            "messages": [{"role": m.role, "content": m.content} for m in call.messages],
            token_field: call.max_tokens,
        }
        if call.temperature is not None and "temperature" not in refused:
            payload["temperature"] = call.temperature
        if call.json_schema is not None and "response_format" not in refused:
            if self.settings.options.get("response_format", "json_schema") == "json_object":
                payload["response_format"] = {"type": "json_object"}
            else:
                payload["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "commit_report", "schema": call.json_schema, "strict": True},
                }
        if stream:
            payload["stream"] = True
            if "stream_options" not in refused:
                payload["stream_options"] = {"include_usage": True}
        return payload

    def _finish_reason(self, reason: Any) -> FinishReason:
        return finish_reason(self.settings.name, reason, FINISH_REASONS, frozenset())


def _usage(body: dict[str, Any]) -> dict[str, int]:
    """OpenAI's ``prompt_tokens``/``completion_tokens``, or the ``input_tokens``/``output_tokens`` some servers
    and proxies send; absent (vLLM without ``stream_options``, older llama.cpp): no figures."""
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return {}
    return usage_of(
        usage.get("prompt_tokens", usage.get("input_tokens")),
        usage.get("completion_tokens", usage.get("output_tokens")),
    )
