"""No identical work paid for twice, through real workers: single-flight, stale-while-revalidate, the
producer-side cache, idempotency across a killed worker."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

import pytest

import stepper
from stepper.config import current_settings
from stepper.families import FAMILIES
from stepper.infra.connections import as_text
from tests.integration.conftest import COUNTING_CHAINS, Fleet
from tests.support.providers import ORDER_KEY, calls, run_order

SLOW = {"class": "tests.support.providers:SlowChat", "options": {"delay_s": 0.5}}
SEP = "\x06\x16"


def deterministic(content: str, **extra: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": content}], "temperature": 0, **extra}


def chat_depth(fleet: Fleet) -> int:
    return sum(int(fleet.redis.llen("chat" if level == 0 else f"chat{SEP}{level}")) for level in range(10))


@pytest.fixture(scope="module")
def slow_fleet(start_fleet: Callable[..., Fleet]) -> Fleet:
    return start_fleet(
        {"stepper_chains": {**COUNTING_CHAINS, "chat": ["slow:slow-model"]}, "stepper_providers": {"slow": SLOW}},
        name="reuse",
        concurrency=8,
    )


def test_a_hundred_identical_requests_make_one_provider_call(slow_fleet: Fleet) -> None:
    request = deterministic("the same question")
    pending = [slow_fleet.app.send_task("stepper.chat", kwargs=request) for _ in range(100)]
    results = [result.get(timeout=120) for result in pending]
    assert calls(slow_fleet.redis, "slow") == 1
    assert {r["output"]["message"]["content"] for r in results} == {results[0]["output"]["message"]["content"]}
    assert "the same question" in results[0]["output"]["message"]["content"]
    assert sum(not r["cached"] for r in results) == 1


def test_stale_entry_is_served_and_refreshed_once(slow_fleet: Fleet) -> None:
    request = deterministic("getting old")
    existing = set(slow_fleet.redis.keys("stepper:cache:chat:*"))
    slow_fleet.app.send_task("stepper.chat", kwargs=request).get(timeout=30)
    before = calls(slow_fleet.redis, "slow")
    (key,) = set(slow_fleet.redis.keys("stepper:cache:chat:*")) - existing  # this fleet's chain is in the key
    entry = json.loads(slow_fleet.redis.get(key) or b"{}")
    entry["stored_at"] -= current_settings().cache.windows["chat"].fresh_s + 60
    slow_fleet.redis.set(key, json.dumps(entry))

    stale = [slow_fleet.app.send_task("stepper.chat", kwargs=request).get(timeout=30) for _ in range(5)]
    assert all(result["cached"] for result in stale)
    deadline = time.monotonic() + 30
    while json.loads(slow_fleet.redis.get(key) or b"{}")["stored_at"] == entry["stored_at"]:
        assert time.monotonic() < deadline, "the stale entry was never refreshed"
        time.sleep(0.1)
    time.sleep(1.0)  # room for a second, duplicate refresh to show up if there were one
    assert calls(slow_fleet.redis, "slow") == before + 1


def test_a_fresh_hit_in_the_producer_enqueues_nothing(counting_fleet: Fleet) -> None:
    request = deterministic("asked before")
    first = stepper.submit("chat", request).get(timeout=30)
    before_calls, before_depth = calls(counting_fleet.redis, "counting"), chat_depth(counting_fleet)
    again = stepper.submit("chat", request)
    assert again.get(timeout=1) == {**first, "cached": True}
    assert chat_depth(counting_fleet) == before_depth
    assert calls(counting_fleet.redis, "counting") == before_calls
    bypass = stepper.submit("chat", {**request, "cache": "bypass"}).get(timeout=30)
    assert bypass["cached"] is False and calls(counting_fleet.redis, "counting") == before_calls + 1


def test_idempotency_survives_a_killed_worker(start_fleet: Callable[..., Fleet]) -> None:
    fleet = start_fleet(
        {
            "stepper_chains": {"chat": ["slow:slow-model"]},
            "stepper_providers": {"slow": {**SLOW, "options": {"delay_s": 1.5}}},
            # The killed run's claim is renewed no more: the redelivered copy computes once it runs out.
            "stepper_recovery": {"lease_s": 2.0},
        },
        name="idempotent",
        pool="prefork",
        concurrency=1,
    )
    # Not deterministic (temperature 0.9): only the idempotency key keeps it from running twice.
    request = {
        "messages": [{"role": "user", "content": "charge order 42"}],
        "temperature": 0.9,
        "idempotency_key": "order-42",
    }
    first = fleet.app.send_task("stepper.chat", kwargs=request)
    deadline = time.monotonic() + 30
    while fleet.redis.llen(ORDER_KEY) == 0:
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    (child,) = fleet.worker.pool_children()
    os.kill(child, signal.SIGKILL)  # mid-call: the provider has not finished

    answer = first.get(timeout=60)
    assert run_order(fleet.redis) == ["charge order 42", "charge order 42"]  # started twice...
    assert calls(fleet.redis, "slow") == 1  # ...completed at the provider once
    second = fleet.app.send_task("stepper.chat", kwargs=request).get(timeout=30)
    assert second["output"] == answer["output"] and second["cached"]
    assert calls(fleet.redis, "slow") == 1


def test_submit_with_a_known_idempotency_key_returns_the_first_task(counting_fleet: Fleet) -> None:
    request = {"messages": [{"role": "user", "content": "once"}], "temperature": 1.0, "idempotency_key": "k-1"}
    first = stepper.submit("chat", request)
    second = stepper.submit("chat", request)
    assert second.id == first.id
    assert second.get(timeout=30) == first.get(timeout=30)


def test_a_family_served_from_cache_keeps_its_output_shape(counting_fleet: Fleet) -> None:
    result = stepper.submit("chat", deterministic("shape")).get(timeout=30)
    FAMILIES["chat"].output_model.model_validate(result["output"])


def test_a_result_nobody_stores_still_leaves_its_cache_entry(counting_fleet: Fleet) -> None:
    """The cache entry rides with the stored result (stepper.infra.result_riders); a task whose result is not
    stored (``ignore_result``) writes it once it has run, and releases its single-flight claim."""
    request = deterministic("not stored")
    entries = "stepper:cache:chat:*}"  # not the claims (``...}:flight``)
    existing = set(counting_fleet.redis.keys(entries))
    sent = counting_fleet.app.send_task("stepper.chat", kwargs=request, ignore_result=True)
    deadline = time.monotonic() + 30
    while not (written := set(counting_fleet.redis.keys(entries)) - existing):
        assert time.monotonic() < deadline, "the cache entry was never written"
        time.sleep(0.05)
    (key,) = written
    assert json.loads(counting_fleet.redis.get(key) or b"{}")["result"]["kind"] == "chat"
    assert not counting_fleet.redis.exists(f"{as_text(key)}:flight")
    assert not counting_fleet.redis.exists(f"celery-task-meta-{sent.id}")
    again = counting_fleet.app.send_task("stepper.chat", kwargs=request).get(timeout=30)
    assert again["cached"] is True
