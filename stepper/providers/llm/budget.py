"""Fitting a conversation into a model's input budget."""

from __future__ import annotations

from stepper.errors import InvalidRequest
from stepper.providers.llm.tokens import estimate_message_tokens
from stepper.schemas.chat import Message


def fit_conversation(messages: list[Message], input_budget: int) -> tuple[list[Message], int]:
    """Drop the oldest turns until the conversation fits; keep system messages and the latest user message.

    Returns the kept messages in their original order and how many were dropped. A single message larger
    than the whole budget cannot be helped by dropping others: that is the caller's error.
    """
    for message in messages:
        size = estimate_message_tokens(message.content)
        if size > input_budget:
            raise InvalidRequest(
                f"a {message.role} message of about {size} tokens exceeds the model's input budget of "
                f"{input_budget} tokens; shorten it or choose a model with a larger context"
            )
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=len(messages) - 1)
    pinned = {i for i, m in enumerate(messages) if m.role == "system"} | {last_user}
    total = sum(estimate_message_tokens(m.content) for m in messages)
    dropped: set[int] = set()
    for index in range(len(messages)):  # oldest first
        if total <= input_budget:
            break
        if index not in pinned:
            dropped.add(index)
            total -= estimate_message_tokens(messages[index].content)
    if total > input_budget:
        raise InvalidRequest(
            f"the system messages and the latest user message alone take about {total} tokens, over the "
            f"model's input budget of {input_budget}; shorten them"
        )
    return [m for i, m in enumerate(messages) if i not in dropped], len(dropped)
