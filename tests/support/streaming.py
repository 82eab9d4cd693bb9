"""Recording what an LLM adapter streams, for the adapters' tests."""

from __future__ import annotations

from typing import Any

from stepper.infra.streams import StreamEvent, current_sink
from stepper.providers.llm.base import LlmProvider
from stepper.schemas import ChatRequest


class Sink:
    """A delta sink that keeps every event, in order."""

    def __init__(self) -> None:
        self.events: list[StreamEvent] = []

    def delta(self, text: str) -> None:
        self.events.append(StreamEvent("delta", text))

    def tool_call(
        self,
        index: int,
        call_id: str | None,
        name: str | None,
        arguments: str,
        extra_content: dict[str, Any] | None = None,
    ) -> None:
        self.events.append(StreamEvent.tool_call(index, call_id, name, arguments, extra_content))

    def reset(self, reason: str) -> None:
        self.events.append(StreamEvent("reset", reason))


def streamed(provider: LlmProvider, request: ChatRequest, sink: Sink, model: str = "test-model") -> str:
    """Complete ``request`` with ``sink`` as the task's stream; the final answer's text."""
    token = current_sink.set(sink)
    try:
        return provider.complete(request, model).output.message.content or ""
    finally:
        current_sink.reset(token)


def chat_result(content: str, finish_reason: str = "stop") -> dict[str, Any]:
    """A chat task's result answering ``content``, as a stream's ``done`` is written from (its usage made up)."""
    message = {"role": "assistant", "content": content}
    usage = {"input_tokens": 7, "output_tokens": len(content.split())}
    return {"output": {"message": message, "finish_reason": finish_reason}, "usage": usage}
