"""Any OpenAI-compatible ``/v1/chat/completions`` server: OpenAI itself, vLLM, TGI, llama.cpp's server, Ollama,
LM Studio, LiteLLM and other proxies, a self-hosted Mistral.

Declare several side by side under their own names, each with its base URL, key variable and models.
Options: ``max_tokens_field`` (``max_tokens``, or ``max_completion_tokens`` for OpenAI's reasoning models),
``response_format`` (``json_schema``, or ``json_object`` for servers without structured outputs).

Chat requests travel as they are: tools, ``tool_choice``, assistant ``tool_calls`` and ``tool`` messages,
``response_format``, ``stop``, ``seed``, ``top_p``, the penalties, ``logprobs``/``top_logprobs`` and ``user``.
Streamed tool calls arrive as ``delta.tool_calls[]`` fragments (``index``, then ``id`` and ``function.name``
once, then pieces of ``function.arguments``) and are relayed as they come.

The servers answer in more spellings than OpenAI's reference (platform.openai.com/docs/api-reference/chat)
shows, and each is read here: finish reasons (TGI's ``eos_token``, ``stop_sequence``...), usage in the last
chunk or not at all, keep-alive comments, role-only and empty deltas, a stream that ends with ``[DONE]`` but
no finish reason or with a finish reason but no ``[DONE]``, and an error object in the middle of a 200
stream. An unknown finish reason on a well-formed answer is a success, logged once per server and reason.
Optional parameters a server refuses (``stream_options``, ``temperature``, ``response_format``, one of the
two token-limit fields, the sampling hints) are left out from then on, fleet-wide (see ``LlmProvider.refusals``);
a refused field the request needs (``tools``, a JSON ``response_format``, ``stop``, ``logprobs``) makes the
chain move on instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from stepper.errors import ContentRejected, TruncatedOutput
from stepper.providers.llm.base import LlmProvider, finish_reason
from stepper.providers.llm.call import FinishReason, LlmAnswer, LlmCall, ToolCallDelta, tool_call_of, usage_of
from stepper.schemas.chat import Message

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "eos": "stop",  # TGI before its OpenAI layer, some proxies
    "eos_token": "stop",  # TGI
    "stop_sequence": "stop",  # TGI, proxies in front of Anthropic
    "end_turn": "stop",  # proxies in front of Anthropic
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "length": "length",
    "max_tokens": "length",  # proxies in front of Anthropic
    "model_length": "length",  # LiteLLM, Mistral
    "content_filter": "content_filter",
}
#: Token-limit fields: when a server refuses one, the other is sent.
TOKEN_LIMIT_FIELDS = ("max_tokens", "max_completion_tokens")
#: Sampling hints a server may refuse without changing what the answer is: left out from then on.
SAMPLING_HINTS = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty", "user")
#: Request fields copied as they are when set.
PASSED_FIELDS = (*SAMPLING_HINTS, "stop", "top_logprobs")


class OpenAIProvider(LlmProvider):
    default_base_url = "https://api.openai.com/v1"
    optional_parameters = frozenset(
        {"stream_options", "response_format", "tools", "tool_choice", "stop", "logprobs", "top_logprobs"}
        | {*SAMPLING_HINTS, *TOKEN_LIMIT_FIELDS}
    )
    features = frozenset({"tools", "response_format", "logprobs", "stop"})

    def send(self, call: LlmCall) -> LlmAnswer:
        payload = self._payload(call, stream=False)
        with self.refusals(call, payload):
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
        calls = [tool_call_of(self.settings.name, item) for item in message.get("tool_calls") or ()]
        return LlmAnswer(
            message.get("content") or "",
            self._finish_reason(choice.get("finish_reason")),
            _usage(body),
            calls,
            choice.get("logprobs") if call.logprobs else None,
        )

    def send_streaming(self, call: LlmCall) -> Iterator[str | ToolCallDelta | LlmAnswer]:
        payload = self._payload(call, stream=True)
        parts: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        tokens: list[Any] = []
        finish: FinishReason | None = None
        usage: dict[str, int] = {}

        def answer(reason: FinishReason) -> LlmAnswer:
            whole = [tool_call_of(self.settings.name, calls[index]) for index in sorted(calls)]
            return LlmAnswer("".join(parts), reason, usage, whole, {"content": tokens} if call.logprobs else None)

        with self.refusals(call, payload):
            for event in self.http.stream("POST", "/chat/completions", payload, self.auth_headers()):
                if event.data == "[DONE]":  # the server says the answer is whole, with or without a reason
                    yield answer(finish or self._finish_reason(None))
                    return
                chunk = event.json_object(self.settings.name)
                if "error" in chunk:  # vLLM, llama.cpp and proxies report a failure mid-stream this way
                    raise self.http.stream_error(chunk)
                usage = _usage(chunk) or usage
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        parts.append(delta["content"])
                        yield delta["content"]
                    for fragment in delta.get("tool_calls") or ():
                        yield _gather(calls, fragment)
                    tokens.extend((choice.get("logprobs") or {}).get("content") or ())
                    if choice.get("finish_reason"):
                        finish = self._finish_reason(choice["finish_reason"])
        if finish is None:
            raise TruncatedOutput(f"{self.settings.name} ended its stream without a finish_reason or [DONE]")
        yield answer(finish)  # no [DONE], but a finish reason: whole

    def _payload(self, call: LlmCall, stream: bool) -> dict[str, Any]:
        refused = self.refused(call)
        token_field = self.settings.options.get("max_tokens_field", "max_tokens")
        if token_field in refused:
            token_field = next(field for field in TOKEN_LIMIT_FIELDS if field != token_field)
        payload: dict[str, Any] = {
            "model": call.model,
            "messages": [_message(m) for m in call.messages],
            token_field: call.max_tokens,
        }
        for name in PASSED_FIELDS:
            if getattr(call, name) is not None and name not in refused:
                payload[name] = getattr(call, name)
        if call.logprobs and "logprobs" not in refused:
            payload["logprobs"] = True
        if call.tools is not None and "tools" not in refused:
            payload["tools"] = [tool.model_dump(exclude_none=True) for tool in call.tools]
            if call.tool_choice is not None:
                choice = call.tool_choice
                payload["tool_choice"] = choice if isinstance(choice, str) else choice.model_dump()
        if (response_format := call.response_format) is not None and "response_format" not in refused:
            if response_format.type == "json_object" or self.settings.options.get("response_format") == "json_object":
                payload["response_format"] = {"type": "json_object"}
            else:
                payload["response_format"] = response_format.model_dump(by_alias=True, exclude_none=True)
        if stream:
            payload["stream"] = True
            if "stream_options" not in refused:
                payload["stream_options"] = {"include_usage": True}
        return payload

    def _finish_reason(self, reason: Any) -> FinishReason:
        return finish_reason(self.settings.name, reason, FINISH_REASONS, frozenset())


def _message(message: Message) -> dict[str, Any]:
    """A turn on OpenAI's wire: an assistant's tool calls with null content when it said nothing else."""
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        wire["tool_calls"] = [call.model_dump(exclude={"extra_content"}) for call in message.tool_calls]
        wire["content"] = message.content or None
    if message.tool_call_id is not None:
        wire["tool_call_id"] = message.tool_call_id
    return wire


def _gather(calls: dict[int, dict[str, Any]], fragment: Any) -> ToolCallDelta:
    """Add one ``delta.tool_calls[]`` fragment to the calls gathered so far, and relay it as it came."""
    index = int(fragment.get("index", len(calls))) if isinstance(fragment, dict) else len(calls)
    fragment = fragment if isinstance(fragment, dict) else {}
    function = fragment.get("function") or {}
    gathered = calls.setdefault(index, {"id": None, "function": {"name": None, "arguments": ""}})
    # Some servers repeat the id and name in every fragment: relay them once, as OpenAI does.
    new_id = None if gathered["id"] else fragment.get("id")
    new_name = None if gathered["function"]["name"] else function.get("name")
    gathered["id"] = gathered["id"] or new_id
    gathered["function"]["name"] = gathered["function"]["name"] or new_name
    arguments = function.get("arguments") or ""
    gathered["function"]["arguments"] += arguments
    return ToolCallDelta(index, new_id, new_name, arguments)


def _usage(body: dict[str, Any]) -> dict[str, int]:
    """OpenAI's ``prompt_tokens``/``completion_tokens``, or the ``input_tokens``/``output_tokens`` some servers
    and proxies send; absent (vLLM without ``stream_options``, older llama.cpp): no figures."""
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return {}
    details = usage.get("prompt_tokens_details")
    return usage_of(
        usage.get("prompt_tokens", usage.get("input_tokens")),
        usage.get("completion_tokens", usage.get("output_tokens")),
        details.get("cached_tokens") if isinstance(details, dict) else None,
    )
