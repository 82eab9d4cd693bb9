"""Hypothesis strategies for the request fuzzers: arbitrary JSON, and one-place mutations of valid requests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def mutate(data: st.DataObject, value: Any) -> Any:
    """Change one place in a JSON value: replace, delete or add something at a randomly chosen path."""
    if isinstance(value, dict) and value and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(value)))
        action = data.draw(st.sampled_from(["descend", "replace", "delete", "add"]))
        if action == "descend":
            value[key] = mutate(data, value[key])
        elif action == "replace":
            value[key] = data.draw(JSON_VALUES)
        elif action == "delete":
            del value[key]
        else:
            value[data.draw(st.text(max_size=10))] = data.draw(JSON_VALUES)
        return value
    if isinstance(value, list) and value and data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(value) - 1))
        value[index] = mutate(data, value[index])
        return value
    return data.draw(JSON_VALUES | st.sampled_from(["", " ", "user", "https://x", "abcdef0", "aGk="]))
