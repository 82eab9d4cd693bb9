"""Vendors' failure semantics through real workers: deadlines, cancellation, streams that always end, and
the attempts of every broker run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery.result import AsyncResult

from stepper.errors import Cancelled, DeadlineExceeded
from stepper.infra.streams import StreamEvent, read_stream
from stepper.producer import outcome_events
from tests.integration.conftest import Fleet
from tests.support.fake_http import Fault, running
from tests.support.vendors.openai import FakeOpenAI

KEY = "sk-semantics-0a1b2c"
ADAPTER = "stepper.providers.openai:OpenAIProvider"
SETTINGS: dict[str, Any] = {
    "stepper_providers": {
        "openai": {
            "class": ADAPTER,
            "kinds": ["chat", "report"],
            "api_key_env": "OPENAI_API_KEY",
            "first_token_timeout_s": 20,
        },
    },
    "stepper_chains": {"chat": ["openai:gpt-4o-mini"], "report": ["openai:gpt-4o-mini"]},
    "stepper_breaker": {"fail_max": 50, "reset_timeout_s": 300},
    "stepper_retry": {
        "attempts_per_provider": 1,
        "backoff_base_s": 0.05,
        "task_max_retries": 2,
        "task_countdown_cap_s": 1.0,
    },
}


def ask(content: str, **options: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], **options}


@pytest.fixture(scope="module")
def vendor() -> Iterator[FakeOpenAI]:
    yield from running(FakeOpenAI(KEY, "fake-openai"))  # type: ignore[misc]


@pytest.fixture(scope="module")
def fleet(start_fleet: Callable[..., Fleet], vendor: FakeOpenAI) -> Fleet:
    env = {"OPENAI_API_KEY": KEY, "STEPPER_OPENAI_BASE_URL": vendor.base_url}
    return start_fleet(SETTINGS, name="semantics", concurrency=2, env=env)


@pytest.fixture(scope="module")
def prefork_fleet(start_fleet: Callable[..., Fleet], vendor: FakeOpenAI) -> Fleet:
    env = {"OPENAI_API_KEY": KEY, "STEPPER_OPENAI_BASE_URL": vendor.base_url}
    return start_fleet(SETTINGS, name="semantics-prefork", concurrency=2, pool="prefork", env=env)


@pytest.fixture(params=["threads", "prefork"])
def any_pool_fleet(request: pytest.FixtureRequest) -> Fleet:
    """Each pool cancels differently: the enforcer thread lives in the worker, or in each pool child."""
    fleet: Fleet = request.getfixturevalue("fleet" if request.param == "threads" else "prefork_fleet")
    return fleet


@pytest.fixture(autouse=True)
def clean(vendor: FakeOpenAI) -> None:
    vendor.requests.clear()
    vendor.faults.clear()


def events_of(fleet: Fleet, result: AsyncResult) -> list[StreamEvent]:
    ended = lambda: outcome_events(fleet.app.AsyncResult(result.id))  # noqa: E731
    return list(read_stream(fleet.redis, result.id, timeout_s=30, ended=ended))


def test_the_final_result_lists_the_attempts_of_every_broker_run(fleet: Fleet, vendor: FakeOpenAI) -> None:
    vendor.inject(Fault(status=503, body={"error": {"message": "overloaded"}}))
    result = fleet.app.send_task("stepper.chat", kwargs=ask("retried", cache="bypass")).get(timeout=30)
    assert [(a["run"], a["outcome"]) for a in result["attempts"]] == [(1, "retryable_error"), (2, "ok")]
    assert "overloaded" in result["attempts"][0]["error"]


def test_a_streamed_request_answered_from_the_cache_streams_its_answer(fleet: Fleet, vendor: FakeOpenAI) -> None:
    request = ask("cached and streamed", temperature=0, stream=True)
    first = fleet.app.send_task("stepper.chat", kwargs=request)
    text = "".join(event.text for event in events_of(fleet, first) if event.type == "delta")
    assert first.get(timeout=30)["cached"] is False
    second = fleet.app.send_task("stepper.chat", kwargs=request)
    events = events_of(fleet, second)
    assert second.get(timeout=30)["cached"] is True
    assert [event.type for event in events] == ["delta", "done"]
    assert events[0].text == text == "fake-openai says: cached and streamed"
    assert len(vendor.requests) == 1


def test_a_deadline_spent_during_a_call_ends_the_task_at_the_deadline(fleet: Fleet, vendor: FakeOpenAI) -> None:
    vendor.inject(Fault(delay_s=8))
    started = time.monotonic()
    result = fleet.app.send_task("stepper.chat", kwargs=ask("in a hurry", cache="bypass", deadline_s=1.5))
    with pytest.raises(DeadlineExceeded) as raised:
        result.get(timeout=30)
    assert time.monotonic() - started < 8  # not when the vendor would have answered
    assert [a["outcome"] for a in raised.value.attempts] == ["deadline"]


def test_a_message_queued_past_its_deadline_never_runs(fleet: Fleet, vendor: FakeOpenAI) -> None:
    result = fleet.app.send_task("stepper.chat", kwargs=ask("too late", cache="bypass", deadline_s=0.5), countdown=2)
    with pytest.raises(Exception, match="expired"):
        result.get(timeout=30)
    assert result.state == "REVOKED"
    assert vendor.requests == []


def test_revoking_a_running_task_cancels_it_and_its_stream(any_pool_fleet: Fleet, vendor: FakeOpenAI) -> None:
    fleet = any_pool_fleet
    vendor.inject(Fault(delay_s=10))
    result = fleet.app.send_task("stepper.chat", kwargs=ask("cancel me", cache="bypass", stream=True))
    deadline = time.monotonic() + 20
    while not vendor.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert vendor.requests, "the task never called the vendor"
    revoked_at = time.monotonic()
    result.revoke()
    events = events_of(fleet, result)
    assert events[-1].type == "cancelled"
    with pytest.raises(Cancelled) as raised:
        result.get(timeout=30)
    assert time.monotonic() - revoked_at < 8  # long before the vendor's answer would have come
    assert result.state == "REVOKED"
    assert [a["outcome"] for a in raised.value.attempts] == ["cancelled"]
