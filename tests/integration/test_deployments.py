"""Several deployments of one model and spend budgets, through real workers, a real Redis and the gateway.

Each deployment is a loopback vLLM fake (tests/support/vendors/openai_compatible.py) with its own URL; the
worker's chain reaches them through the OpenAI-compatible adapter exactly as it would reach replicas.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest

from stepper.config import parse_stepper_settings
from stepper.gateway.auth import key_digest
from stepper.guards.spend import budget_uses
from stepper.infra import keys
from stepper.ops.exporter import FleetCollector
from tests.integration.conftest import GATEWAY_KEY, Fleet
from tests.support.fake_http import running, serving
from tests.support.gateway import running_gateway
from tests.support.redis_server import RESERVED_DATABASES, RedisServer
from tests.support.vendors.openai_compatible import FakeOpenAICompatible
from tests.support.workers import REPO_ROOT, write_config

ADAPTER = "stepper.providers.openai:OpenAIProvider"
#: Dear enough that one short chat (a few dozen tokens) costs more than the tiny budgets below.
DEAR = {"input_per_mtok": 10_000.0, "output_per_mtok": 10_000.0}
TINY = {"per_day": 0.01}
UNAVAILABLE = (503, {"error": {"message": "replica overloaded", "type": "ServiceUnavailableError", "code": 503}})


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[FakeOpenAICompatible]]:
    fakes = [FakeOpenAICompatible("vllm") for _ in range(3)]
    with ExitStack() as started:
        for fake in fakes:
            started.enter_context(serving(fake))
        yield fakes


@pytest.fixture(scope="module")
def spare() -> Iterator[FakeOpenAICompatible]:
    yield from running(FakeOpenAICompatible("ollama"))  # type: ignore[misc]


@pytest.fixture(autouse=True)
def clean(replicas: list[FakeOpenAICompatible], spare: FakeOpenAICompatible) -> None:
    for fake in (*replicas, spare):
        fake.requests.clear()
        fake.next_errors.clear()
        fake.first_byte_delay_s = 0.0


def provider(model: str, strategy: str, deployments: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "class": ADAPTER,
        "kinds": ["chat", "report"],
        "models": [model],
        "options": {"response_format": "json_object"},
        "strategy": strategy,
        "deployments": deployments,
        **extra,
    }


def single(fake: FakeOpenAICompatible, models: list[str], **extra: Any) -> dict[str, Any]:
    return {"class": ADAPTER, "kinds": ["chat", "report"], "base_url": fake.base_url, "models": models, **extra}


def fleet_settings(replicas: list[FakeOpenAICompatible], spare: FakeOpenAICompatible) -> dict[str, Any]:
    a, b, c = replicas
    return {
        "stepper_providers": {
            "weighted": provider(
                "w-7b", "weighted", [{"base_url": a.base_url, "weight": 3, "label": "a"}, {"base_url": b.base_url}]
            ),
            "idle": provider("i-7b", "least-busy", [{"base_url": a.base_url, "label": "a"}, {"base_url": c.base_url}]),
            "failing": provider("f-7b", "weighted", [{"base_url": b.base_url, "label": "b"}, {"base_url": c.base_url}]),
            "spare": single(spare, ["w-7b", "i-7b", "f-7b"]),
        },
        # A request's model picks its entries: w-7b -> weighted, spare; i-7b -> idle, spare; f-7b -> failing, spare.
        "stepper_chains": {
            "chat": ["weighted:w-7b", "idle:i-7b", "failing:f-7b", "spare:w-7b"],
            "report": ["spare:w-7b"],
        },
        "stepper_breaker": {"fail_max": 3, "reset_timeout_s": 300},
        "stepper_retry": {"attempts_per_provider": 1, "task_max_retries": 0},
    }


@pytest.fixture(scope="module")
def fleet(
    start_fleet: Callable[..., Fleet], replicas: list[FakeOpenAICompatible], spare: FakeOpenAICompatible
) -> Fleet:
    return start_fleet(fleet_settings(replicas, spare), name="deployments", concurrency=4)


def chat(fleet: Fleet, model: str, content: str = "hello") -> Any:
    request = {"messages": [{"role": "user", "content": content}], "cache": "bypass", "model": model}
    return fleet.app.send_task("stepper.chat", kwargs=request)


def redis_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def first_ok(result: dict[str, Any]) -> tuple[str, str | None]:
    ok = [attempt for attempt in result["attempts"] if attempt["outcome"] == "ok"]
    return ok[-1]["provider"], ok[-1]["deployment"]


def test_the_split_follows_the_weights(fleet: Fleet, replicas: list[FakeOpenAICompatible]) -> None:
    a, b, _ = replicas
    sent = [chat(fleet, "w-7b", f"split {n}") for n in range(200)]
    served = Counter(first_ok(task.get(timeout=60)) for task in sent)
    assert set(served) <= {("weighted", "a"), ("weighted", "1")}
    share_a = served[("weighted", "a")] / 200
    assert 0.63 < share_a < 0.87  # 3 : 1 is 0.75; about four standard deviations either side
    assert len(a.requests) + len(b.requests) == 200


def test_least_busy_sends_to_the_idle_deployment(fleet: Fleet, replicas: list[FakeOpenAICompatible]) -> None:
    a, _, c = replicas
    for _ in range(3):  # whichever deployment the slow call took, the next calls go to the other one
        for fake in (a, c):
            fake.requests.clear()
            fake.first_byte_delay_s = 3.0
        slow = chat(fleet, "i-7b", "slow one")
        busy = _wait_for_request(a, c)
        for fake in (a, c):
            fake.first_byte_delay_s = 0.0
        idle_label = "1" if busy is a else "a"
        quick = [chat(fleet, "i-7b", f"quick {n}").get(timeout=30) for n in range(3)]
        assert {first_ok(result) for result in quick} == {("idle", idle_label)}
        assert first_ok(slow.get(timeout=30)) == ("idle", "a" if busy is a else "1")


def _wait_for_request(*fakes: FakeOpenAICompatible, timeout_s: float = 20) -> FakeOpenAICompatible:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for fake in fakes:
            if any("slow one" in str(request.json()) for request in fake.requests):
                return fake
        time.sleep(0.02)
    raise AssertionError("the slow chat reached no deployment")


def test_a_deployment_answering_503_is_skipped_and_its_breaker_is_its_own(
    fleet: Fleet, replicas: list[FakeOpenAICompatible]
) -> None:
    _, b, c = replicas
    b.next_errors.extend([UNAVAILABLE] * 100)
    results: list[dict[str, Any]] = []
    state_b = keys.breaker("failing#b") + ":pybreaker:state"
    while fleet.redis.get(state_b) != b"open":
        results.append(chat(fleet, "f-7b", f"failover {len(results)}").get(timeout=30))  # none raises
        assert len(results) < 60, "b's breaker never opened"
    assert {first_ok(result) for result in results} == {("failing", "1")}  # c served every one
    tried_b = [
        attempt["outcome"] for result in results for attempt in result["attempts"] if attempt["deployment"] == "b"
    ]
    assert tried_b == ["retryable_error"] * 3  # fail_max, then the breaker opened
    assert len(b.requests) == 3
    assert fleet.redis.get(keys.breaker("failing#1") + ":pybreaker:state") in (None, b"closed")
    assert fleet.redis.get(keys.breaker("failing") + ":pybreaker:state") is None  # the provider has none of its own
    later = [chat(fleet, "f-7b", f"after {n}").get(timeout=30) for n in range(10)]
    assert {first_ok(result) for result in later} == {("failing", "1")}
    assert len(b.requests) == 3  # rejected before the call
    assert len(c.requests) == len(results) + len(later)


# ---- budgets ----------------------------------------------------------------------------------------------


def budget_settings(paid: FakeOpenAICompatible, spare: FakeOpenAICompatible, state_url: str) -> dict[str, Any]:
    return {
        "stepper_providers": {
            "paid": single(paid, ["m-7b"], prices={"m-7b": DEAR}, budget={"input_tokens": 4096, **TINY}),
            "spare": single(spare, ["m-7b"], prices={"m-7b": DEAR}),  # no budget of its own
        },
        "stepper_chains": {"chat": ["paid:m-7b", "spare:m-7b"], "report": ["spare:m-7b"]},
        "stepper_retry": {"attempts_per_provider": 1, "task_max_retries": 0},
        "stepper_state_url": state_url,
        "stepper_gateway": {"key_hashes": [key_digest(GATEWAY_KEY)], "budget": TINY},
    }


@pytest.fixture(scope="module")
def paid() -> Iterator[FakeOpenAICompatible]:
    yield from running(FakeOpenAICompatible("vllm"))  # type: ignore[misc]


@pytest.fixture(scope="module")
def two_fleets(
    start_fleet: Callable[..., Fleet],
    redis_server: RedisServer,
    paid: FakeOpenAICompatible,
    spare: FakeOpenAICompatible,
) -> tuple[Fleet, Fleet, dict[str, Any]]:
    """Two workers with queues of their own (two broker databases) and one state Redis: the fleet's ledger."""
    state_url = f"redis://127.0.0.1:{redis_server.port}/{RESERVED_DATABASES['budgets']}"
    settings = budget_settings(paid, spare, state_url)
    first = start_fleet(settings, name="budget-1")
    second = start_fleet(settings, name="budget-2")
    return first, second, settings


def test_a_spent_budget_moves_the_chain_on_across_the_fleet(
    two_fleets: tuple[Fleet, Fleet, dict[str, Any]], paid: FakeOpenAICompatible, tmp_path: Path
) -> None:
    first, second, settings = two_fleets
    spent = chat(first, "m-7b", "spend it").get(timeout=30)
    assert first_ok(spent) == ("paid", None)
    assert spent["usage"]["cost"] > TINY["per_day"]
    assert spent["usage"]["currency"] == "USD"
    # The other worker reads the same ledger: it skips the provider without calling it.
    moved_on = chat(second, "m-7b", "over budget").get(timeout=30)
    assert first_ok(moved_on) == ("spare", None)
    skipped = moved_on["attempts"][0]
    assert (skipped["provider"], skipped["outcome"]) == ("paid", "budget_exhausted")
    assert "the daily budget of provider paid (0.01 USD) is spent" in skipped["error"]
    assert len(paid.requests) == 1
    # stepper status reads the same ledger.
    state = redis_for(settings["stepper_state_url"])
    uses = budget_uses(state, parse_stepper_settings(settings))
    assert [(use.scope, use.name, use.window) for use in uses] == [("provider", "paid", "day")]
    assert uses[0].spent == pytest.approx(spent["usage"]["cost"])
    registry = CollectorRegistry()
    registry.register(FleetCollector(first.app, state, parse_stepper_settings(settings)))
    scraped = generate_latest(registry).decode()
    assert 'stepper_budget_limit{currency="USD",name="paid",scope="provider",window="day"} 0.01' in scraped
    assert 'stepper_budget_spent{currency="USD",name="paid",scope="provider",window="day"}' in scraped
    shown = stepper_status(first.url, settings, tmp_path)
    assert f"provider paid                     day   spent {uses[0].spent:.4f} of 0.01 USD" in shown


def stepper_status(url: str, settings: dict[str, Any], directory: Path) -> str:
    """What an operator sees: ``stepper status`` with the fleet's config module."""
    env = {
        **os.environ,
        "STEPPER_REDIS_URL": url,
        "CELERY_CONFIG_MODULE": write_config(directory, settings),
        "PYTHONPATH": os.pathsep.join([str(directory), str(REPO_ROOT)]),
    }
    command = [sys.executable, "-m", "stepper", "status"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def test_a_gateway_key_over_budget_gets_429_saying_which_budget_and_when_it_resets(
    two_fleets: tuple[Fleet, Fleet, dict[str, Any]], tmp_path: Path
) -> None:
    first, _, settings = two_fleets
    body = {"model": "m-7b", "messages": [{"role": "user", "content": "charge my key"}]}
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    with running_gateway(first.url, tmp_path / "gateway", settings) as gateway:
        answered = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=60)
        assert answered.status_code == 200, answered.text  # charged to the key by the worker that served it
        refused = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert refused.status_code == 429
    error = refused.json()["error"]
    identity = key_digest(GATEWAY_KEY)[:8]
    assert error["code"] == "insufficient_quota"
    assert f"the daily budget of gateway key {identity} (0.01 USD) is spent" in error["message"]
    assert "it resets at " in error["message"]
    assert 0 < int(refused.headers["Retry-After"]) <= 86400
