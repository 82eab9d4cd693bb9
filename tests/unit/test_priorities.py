"""Named priority levels: 0 is the most urgent of ten on Redis."""

from __future__ import annotations

from typing import Any

import pytest

from stepper.errors import InvalidRequest
from stepper.priorities import PRIORITIES, priority_from_text, priority_value


@pytest.mark.parametrize(("name", "level"), [("interactive", 0), ("normal", 5), ("batch", 9)])
def test_names(name: str, level: int) -> None:
    assert PRIORITIES[name] == level  # type: ignore[index]
    assert priority_value(name) == level


def test_none_is_normal() -> None:
    assert priority_value(None) == 5


@pytest.mark.parametrize("level", range(10))
def test_levels_pass_through(level: int) -> None:
    assert priority_value(level) == level


@pytest.mark.parametrize("level", [-1, 10, 255])
def test_out_of_range(level: int) -> None:
    with pytest.raises(InvalidRequest, match=f"priority {level} is out of range"):
        priority_value(level)


@pytest.mark.parametrize("value", ["urgent", "Normal", "", "5"])
def test_unknown_names(value: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        priority_value(value)
    message = str(raised.value)
    assert repr(value) in message
    for name in PRIORITIES:
        assert name in message


@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_refused(value: bool) -> None:
    with pytest.raises(InvalidRequest, match=repr(value)):
        priority_value(value)


@pytest.mark.parametrize("value", [5.0, 0.0, b"batch"])
def test_other_types_are_refused(value: Any) -> None:
    with pytest.raises(InvalidRequest, match="unknown priority"):
        priority_value(value)


@pytest.mark.parametrize(("text", "level"), [("0", 0), ("7", 7), ("batch", 9), ("interactive", 0)])
def test_text_from_an_option_or_a_query_is_a_number_or_a_name(text: str, level: int) -> None:
    assert priority_from_text(text) == level


@pytest.mark.parametrize("text", ["10", "-1", "urgent", ""])
def test_text_out_of_range_or_unknown_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest):
        priority_from_text(text)
