"""Fitting conversations into a model's input budget."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepper.errors import ContextOverflow
from stepper.providers.llm.budget import fit_conversation
from stepper.providers.llm.tokens import estimate_message_tokens
from stepper.schemas.chat import Message


def msg(role: str, size: int, tag: str = "") -> Message:
    return Message.model_validate({"role": role, "content": (tag + "x" * size)[: max(size, len(tag))]})


def test_a_short_conversation_is_left_alone() -> None:
    messages = [msg("system", 30), msg("user", 30), msg("assistant", 30), msg("user", 30)]
    assert fit_conversation(messages, 4096, 100) == (messages, 0)


def test_oldest_turns_go_first_and_system_and_last_user_stay() -> None:
    system, old_user, old_reply, mid_user, mid_reply, last_user = (
        msg("system", 60, "S"),
        msg("user", 300, "U1"),
        msg("assistant", 300, "A1"),
        msg("user", 300, "U2"),
        msg("assistant", 300, "A2"),
        msg("user", 60, "U3"),
    )
    messages = [system, old_user, old_reply, mid_user, mid_reply, last_user]
    budget = sum(estimate_message_tokens(m.content) for m in (system, mid_user, mid_reply, last_user))
    kept, dropped = fit_conversation(messages, budget, 100)
    assert kept == [system, mid_user, mid_reply, last_user]
    assert dropped == 2


def test_one_message_over_the_budget_overflows_this_models_context() -> None:
    with pytest.raises(ContextOverflow, match=r"about \d+ tokens exceeds the input budget of 50") as raised:
        fit_conversation([msg("user", 1000)], 50, 100)
    assert raised.value.requested_tokens == estimate_message_tokens("x" * 1000) + 100  # as vendors count it


def test_pinned_messages_that_cannot_fit_together_are_refused() -> None:
    with pytest.raises(ContextOverflow, match="system messages and the latest user message"):
        fit_conversation([msg("system", 120), msg("user", 120)], 60, 10)


roles = st.sampled_from(["system", "user", "assistant"])


@given(st.lists(st.tuples(roles, st.integers(0, 400)), min_size=1, max_size=30), st.integers(20, 3000))
def test_result_fits_keeps_order_and_pins(spec: list[tuple[str, int]], budget: int) -> None:
    messages = [msg(role, size, f"{i}:") for i, (role, size) in enumerate(spec)]
    try:
        kept, dropped = fit_conversation(messages, budget, 100)
    except ContextOverflow:
        return
    assert sum(estimate_message_tokens(m.content) for m in kept) <= budget
    assert dropped == len(messages) - len(kept)
    assert kept == [m for m in messages if m in kept]  # order preserved
    assert all(m in kept for m in messages if m.role == "system")
    users = [m for m in messages if m.role == "user"]
    if users:
        assert users[-1] in kept
