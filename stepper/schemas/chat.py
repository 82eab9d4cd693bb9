"""``stepper.chat``: one chat completion."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stepper.schemas.common import Strict, TaskRequest

Role = Literal["system", "user", "assistant"]


class Message(Strict):
    role: Role
    content: str = Field(max_length=1_000_000)


class ChatRequest(TaskRequest):
    messages: list[Message] = Field(min_length=1, max_length=1000)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    stream: bool = Field(default=False, description="publish deltas to the task's Redis stream (stepper.stream)")


class AssistantMessage(Strict):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatOutput(Strict):
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
