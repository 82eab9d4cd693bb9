"""Fitting a conversation into a model's input budget."""

from __future__ import annotations

from stepper.errors import ContextOverflow
from stepper.providers.llm.tokens import estimate_message_tokens
from stepper.schemas.chat import Message


def fit_conversation(messages: list[Message], input_budget: int, output_tokens: int) -> tuple[list[Message], int]:
    """Drop the oldest turns until the conversation fits; keep system messages and the latest user message.

    An assistant turn that called tools goes with the ``tool`` messages answering it, so that no result is
    left without its call. Returns the kept messages in their original order and how many were dropped. A
    single message larger than the whole budget cannot be helped by dropping others: ``ContextOverflow``, whose
    ``requested_tokens`` counts the kept messages and the ``output_tokens`` asked for, as vendors count it,
    so that the chain moves on to a provider with a larger budget.
    """
    for message in messages:
        size = estimate_message_tokens(message.budget_text())
        if size > input_budget:
            raise ContextOverflow(
                f"a {message.role} message of about {size} tokens exceeds the input budget of {input_budget} "
                "tokens; shorten it or choose a model with a larger context",
                size + output_tokens,
            )
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=len(messages) - 1)
    pinned = {i for i, m in enumerate(messages) if m.role == "system"} | {last_user}
    total = sum(estimate_message_tokens(m.budget_text()) for m in messages)
    dropped: set[int] = set()
    for index in range(len(messages)):  # oldest first
        if total <= input_budget:
            break
        if index not in pinned and index not in dropped:
            for turn in _turn(messages, index):
                dropped.add(turn)
                total -= estimate_message_tokens(messages[turn].budget_text())
    if total > input_budget:
        raise ContextOverflow(
            f"the system messages and the latest user message alone take about {total} tokens, over the "
            f"input budget of {input_budget}; shorten them or choose a model with a larger context",
            total + output_tokens,
        )
    return [m for i, m in enumerate(messages) if i not in dropped], len(dropped)


def _turn(messages: list[Message], index: int) -> list[int]:
    """The messages dropped together with ``messages[index]``: an assistant's tool calls and their results."""
    if not messages[index].tool_calls:
        return [index]
    end = index + 1
    while end < len(messages) and messages[end].role == "tool":
        end += 1
    return list(range(index, end))
