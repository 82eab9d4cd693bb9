"""Provider chains through real workers: fallback, the fleet-wide breaker, retries through the broker."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from stepper.errors import ChainExhausted
from stepper.infra import inflight
from stepper.infra.keys import breaker as breaker_namespace
from tests.integration.conftest import Fleet
from tests.support.providers import calls
from tests.support.waiting import wait_until

HELLO = {"messages": [{"role": "user", "content": "hello"}]}


def only_failing(retry: dict[str, float]) -> dict[str, Any]:
    """A chat chain of one provider that always fails transiently, its breaker never opening, and ``retry``."""
    return {
        "stepper_chains": {"chat": ["failing:down-model"]},
        "stepper_breaker": {"fail_max": 100, "reset_timeout_s": 300},
        "stepper_retry": retry,
    }


def test_fallback_then_breaker_opens_fleet_wide(start_fleet: Callable[..., Fleet]) -> None:
    fleet = start_fleet(
        {
            "stepper_chains": {"chat": ["failing:down-model", "counting:backup-model"]},
            "stepper_breaker": {"fail_max": 3, "reset_timeout_s": 300},
            "stepper_retry": {"attempts_per_provider": 1},
        },
        name="breaker",
    )
    outcomes = []
    for _ in range(5):
        result = fleet.app.send_task("stepper.chat", kwargs=HELLO).get(timeout=30)
        assert (result["provider"], result["model"]) == ("counting", "backup-model")
        outcomes.append([(a["provider"], a["outcome"]) for a in result["attempts"]])

    failed_then_ok = [("failing", "retryable_error"), ("counting", "ok")]
    rejected_then_ok = [("failing", "circuit_open"), ("counting", "ok")]
    assert outcomes == [failed_then_ok] * 3 + [rejected_then_ok] * 2
    assert calls(fleet.redis, "failing") == 3  # the open breaker kept the last two calls away
    # The state lives in Redis, readable by any process (this one is not the worker).
    assert fleet.redis.get(f"{breaker_namespace('failing')}:pybreaker:state") == b"open"
    assert fleet.redis.get(f"{breaker_namespace('counting')}:pybreaker:state") == b"closed"


def test_transient_chain_failure_retries_through_the_broker(start_fleet: Callable[..., Fleet]) -> None:
    retry = {
        "attempts_per_provider": 2,
        "backoff_base_s": 0.01,
        "backoff_cap_s": 0.02,
        "task_max_retries": 2,
        "task_countdown_cap_s": 0.2,
    }
    fleet = start_fleet(only_failing(retry), name="retry")
    result = fleet.app.send_task("stepper.chat", kwargs=HELLO)
    with pytest.raises(ChainExhausted) as caught:
        result.get(timeout=60)
    error = caught.value
    assert error.retryable
    # One first run and two retries through the broker, each trying the provider twice inline: all listed.
    assert [(a["run"], a["outcome"]) for a in error.attempts] == [
        (run, "retryable_error") for run in (1, 1, 2, 2, 3, 3)
    ]
    assert "503" in str(error)
    assert calls(fleet.redis, "failing") == 3 * 2


def test_a_retry_stays_journaled_until_its_task_ends(start_fleet: Callable[..., Fleet]) -> None:
    """A retry due within a second is published at once under the same task id and journaled: ending the first
    run must not forget that entry. The final failure does, with the worker's next batch."""
    retry = {"attempts_per_provider": 1, "backoff_base_s": 0.8, "task_max_retries": 1, "task_countdown_cap_s": 0.8}
    fleet = start_fleet(only_failing(retry), name="retry-journal")
    result = fleet.app.send_task("stepper.chat", kwargs=HELLO)
    wait_until(lambda: calls(fleet.redis, "failing") == 1, "the first run's call")
    watched_until = time.monotonic() + 0.4  # the retry runs 0.8 s after the first run failed
    while time.monotonic() < watched_until:
        assert inflight.message(fleet.redis, result.id) is not None, "the waiting retry left the journal"
        time.sleep(0.01)
    with pytest.raises(ChainExhausted):
        result.get(timeout=30)
    assert calls(fleet.redis, "failing") == 2
    wait_until(lambda: inflight.message(fleet.redis, result.id) is None, "the finished task to leave the journal")
