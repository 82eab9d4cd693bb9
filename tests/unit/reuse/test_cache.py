"""The result cache, single-flight and idempotency, on a real Redis (the private test server)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from stepper.config import current_settings
from stepper.families import FAMILIES
from stepper.reuse.cache import cache_key, cacheable, idempotency_key
from stepper.reuse.serving import serve
from stepper.schemas import ChatOutput, ChatRequest, OcrOutput
from stepper.schemas.common import TaskRequest

CHAT = FAMILIES["chat"]


def chat(**extra: Any) -> ChatRequest:
    return ChatRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], "temperature": 0, **extra})


class Compute:
    """Counts calls; returns a result naming the call, optionally slowly."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls = 0
        self.delay_s = delay_s
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
            number = self.calls
        time.sleep(self.delay_s)
        return {"kind": "chat", "output": {"call": number}, "cached": False}


def test_key_ignores_run_options_but_not_content() -> None:
    settings = current_settings()
    base = cache_key("chat", chat(), settings, ChatOutput)
    assert cache_key("chat", chat(cache="refresh", idempotency_key="k", stream=True), settings, ChatOutput) == base
    assert cache_key("chat", chat(max_tokens=5), settings, ChatOutput) != base
    assert cache_key("chat", chat(), settings, OcrOutput) != base  # another output model version
    hybrid = settings.model_copy(update={"mode": "hybrid"})
    assert cache_key("chat", chat(), hybrid, ChatOutput) != base


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (chat(), True),
        (chat(temperature=0.7), False),
        (ChatRequest.model_validate({"messages": [{"role": "user", "content": "hi"}]}), False),
        (chat(temperature=0.7, cache="use"), True),
        (chat(cache="bypass"), False),
    ],
)
def test_what_is_cacheable(request_: TaskRequest, expected: bool) -> None:
    assert cacheable("chat", request_, current_settings().cache) is expected


def test_a_kind_without_a_window_is_not_cached() -> None:
    settings = current_settings().cache.model_copy(update={"windows": {}})
    assert not cacheable("chat", chat(), settings)


def test_miss_then_fresh_hit(redis_client: redis.Redis) -> None:
    compute = Compute()
    first = serve(CHAT, chat(), "task-1", compute)
    second = serve(CHAT, chat(), "task-2", compute)
    assert compute.calls == 1
    assert first["cached"] is False and second["cached"] is True
    assert second["output"] == first["output"]


def make_stale(client: redis.Redis, request: ChatRequest) -> None:
    key = cache_key("chat", request, current_settings(), ChatOutput)
    entry = json.loads(client.get(key) or b"{}")
    entry["stored_at"] -= current_settings().cache.windows["chat"].fresh_s + 1
    client.set(key, json.dumps(entry))


def test_stale_hit_is_served_and_refreshed_once(redis_client: redis.Redis) -> None:
    compute = Compute()
    serve(CHAT, chat(), "task-1", compute)
    make_stale(redis_client, chat())
    before = redis_client.llen("chat\x06\x169")
    stale = [serve(CHAT, chat(callback_url="https://example.com/x"), f"task-{n}", compute) for n in range(5)]
    assert compute.calls == 1  # served stale, not recomputed in line
    assert all(result["cached"] and result["output"] == {"call": 1} for result in stale)
    refreshes = redis_client.lrange("chat\x06\x169", 0, -1)[before:]
    assert len(refreshes) == 1  # exactly one refresh, at batch priority (level 9)
    _args, kwargs, _embed = json.loads(base64.b64decode(json.loads(refreshes[0])["body"]))
    assert kwargs["cache"] == "refresh" and "callback_url" not in kwargs


def test_refresh_recomputes_and_overwrites(redis_client: redis.Redis) -> None:
    compute = Compute()
    serve(CHAT, chat(), "task-1", compute)
    refreshed = serve(CHAT, chat(cache="refresh"), "task-2", compute)
    assert compute.calls == 2 and refreshed["output"] == {"call": 2}
    assert serve(CHAT, chat(), "task-3", compute)["output"] == {"call": 2}


def test_bypass_never_reads_or_writes(redis_client: redis.Redis) -> None:
    compute = Compute()
    serve(CHAT, chat(cache="bypass"), "task-1", compute)
    serve(CHAT, chat(cache="bypass"), "task-2", compute)
    assert compute.calls == 2
    assert redis_client.keys("stepper:cache:*") == []


def run_together(count: int, call: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
    start = threading.Barrier(count)

    def one(number: int) -> dict[str, Any]:
        start.wait(10)
        return call(number)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_single_flight_computes_once_for_concurrent_identical_requests(redis_client: redis.Redis) -> None:
    compute = Compute(delay_s=0.3)
    results = run_together(20, lambda n: serve(CHAT, chat(), f"task-{n}", compute))
    assert compute.calls == 1
    assert {json.dumps(result["output"]) for result in results} == {json.dumps({"call": 1})}
    assert sum(not result["cached"] for result in results) == 1


def test_an_abandoned_flight_is_taken_over(redis_client: redis.Redis) -> None:
    key = cache_key("chat", chat(), current_settings(), ChatOutput)
    redis_client.set(f"{key}:flight", b"a-worker-that-died", px=200)  # its lease runs out, no result lands
    compute = Compute()
    assert serve(CHAT, chat(), "task-2", compute)["output"] == {"call": 1}
    assert compute.calls == 1


def test_idempotency_key_runs_once_even_when_not_cacheable(redis_client: redis.Redis) -> None:
    compute = Compute()
    request = chat(temperature=0.9, idempotency_key="order-42")
    first = serve(CHAT, request, "task-1", compute)
    again = serve(CHAT, request, "task-2", compute)
    assert compute.calls == 1 and again["output"] == first["output"] and again["cached"]
    assert redis_client.exists(idempotency_key("chat", "order-42"))
    other = serve(CHAT, chat(temperature=0.9, idempotency_key="order-43"), "task-3", compute)
    assert compute.calls == 2 and other["output"] == {"call": 2}


def test_a_redelivered_owner_resumes_its_own_flight(redis_client: redis.Redis) -> None:
    key = idempotency_key("chat", "order-7")
    redis_client.set(f"{key}:flight", b"task-1", px=60_000)  # task-1 died mid-way; its message comes back
    compute = Compute()
    assert serve(CHAT, chat(idempotency_key="order-7"), "task-1", compute)["output"] == {"call": 1}
    assert compute.calls == 1
