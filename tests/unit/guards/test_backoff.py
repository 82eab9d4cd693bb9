"""Backoff with full jitter, and Retry-After when the provider gave one."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepper.guards.backoff import full_jitter, wait_before_retry

FUZZ = settings(max_examples=200, deadline=None, database=None)

UNIT = st.floats(0, 1, exclude_max=True)
SECONDS = st.floats(0, 1000, allow_nan=False)


@FUZZ
@given(attempt=st.integers(0, 64), base_s=SECONDS, cap_s=SECONDS, rand=UNIT)
def test_full_jitter_is_the_random_share_of_the_capped_exponential(
    attempt: int, base_s: float, cap_s: float, rand: float
) -> None:
    ceiling = min(cap_s, base_s * 2.0**attempt)
    wait = full_jitter(attempt, base_s, cap_s, lambda: rand)
    assert wait == rand * ceiling
    assert 0 <= wait <= ceiling


@pytest.mark.parametrize(
    ("attempt", "expected"), [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (30, 8.0)]
)
def test_full_jitter_ceiling(attempt: int, expected: float) -> None:
    assert full_jitter(attempt, 0.5, 8.0, lambda: 1.0) == expected
    assert full_jitter(attempt, 0.5, 8.0, lambda: 0.0) == 0.0


def test_full_jitter_uses_the_injected_random_once_per_call() -> None:
    draws = iter([0.25, 0.75])
    calls: list[float] = []

    def rand() -> float:
        value = next(draws)
        calls.append(value)
        return value

    assert full_jitter(2, 1.0, 100.0, rand) == 1.0
    assert full_jitter(2, 1.0, 100.0, rand) == 3.0
    assert calls == [0.25, 0.75]


def test_full_jitter_with_a_huge_attempt_is_capped() -> None:
    assert full_jitter(1100, 0.5, 8.0, lambda: 0.5) == 4.0


@FUZZ
@given(attempt=st.integers(0, 64), retry_after_s=SECONDS, rand=UNIT)
def test_retry_after_wins_over_backoff(attempt: int, retry_after_s: float, rand: float) -> None:
    assert wait_before_retry(attempt, retry_after_s, 0.5, 8.0, lambda: rand) == retry_after_s


def test_retry_after_is_honoured_even_above_the_cap() -> None:
    assert wait_before_retry(0, 30.0, 0.5, 8.0, lambda: 0.0) == 30.0


def test_negative_retry_after_is_no_wait() -> None:
    assert wait_before_retry(0, -3.0, 0.5, 8.0, lambda: 1.0) == 0.0


def test_without_retry_after_it_is_full_jitter() -> None:
    assert wait_before_retry(3, None, 0.5, 8.0, lambda: 0.5) == 2.0
    assert wait_before_retry(3, None, 0.5, 8.0, lambda: 0.5) == full_jitter(3, 0.5, 8.0, lambda: 0.5)
