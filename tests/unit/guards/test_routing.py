"""Deployment routing, on both backends: weights, the fleet's least-busy deployment, the fastest one with
exploration, and weights again when Redis is gone."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from stepper.guards.routing import EXPLORE_SHARE, MemoryRouteBackend, RedisRouteBackend, RouteBackend, Router
from stepper.infra import keys
from stepper.settings import DeploymentTarget, ProviderSettings


def targets(*weights: float, total_timeout_s: float = 60.0) -> tuple[DeploymentTarget, ...]:
    spec = {
        "name": "llm",
        "class": "tests.unit.fake:Llm",
        "total_timeout_s": total_timeout_s,
        "deployments": [{"base_url": f"http://d{index}/v1", "weight": weight} for index, weight in enumerate(weights)],
    }
    return ProviderSettings.model_validate(spec).targets()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> RouteBackend:
    if request.param == "memory":
        return MemoryRouteBackend()
    client: redis.Redis = request.getfixturevalue("redis_client")
    return RedisRouteBackend(client)


def test_weighted_follows_the_weights() -> None:
    router = Router(MemoryRouteBackend(), random.Random(1))
    picks = Counter(router.pick("llm", "weighted", targets(3, 1, 1)).target.label for _ in range(10_000))
    assert picks["0"] / 10_000 == pytest.approx(0.6, abs=0.03)
    assert picks["1"] / 10_000 == pytest.approx(0.2, abs=0.03)
    assert picks["2"] / 10_000 == pytest.approx(0.2, abs=0.03)


def test_least_busy_sends_to_the_idle_deployment(backend: RouteBackend) -> None:
    router = Router(backend, random.Random(2))
    three = targets(1, 1, 1)
    held = [router.pick("llm", "least-busy", three) for _ in range(3)]
    assert sorted(str(pick.target.label) for pick in held) == ["0", "1", "2"]  # one call each
    router.done(held[1], None)  # one deployment becomes idle
    for _ in range(5):
        again = router.pick("llm", "least-busy", three)
        assert again.target.label == held[1].target.label
        router.done(again, None)


def test_least_busy_counts_calls_across_processes(redis_client: redis.Redis) -> None:
    """Two routers (two workers) over one Redis see each other's calls in flight."""
    first, second = Router(RedisRouteBackend(redis_client)), Router(RedisRouteBackend(redis_client))
    two = targets(1, 1)
    busy = first.pick("llm", "least-busy", two)
    for _ in range(5):
        other = second.pick("llm", "least-busy", two)
        assert other.target.label != busy.target.label
        second.done(other, None)


def test_a_dead_workers_claim_expires_with_its_lease(redis_client: redis.Redis) -> None:
    router = Router(RedisRouteBackend(redis_client))
    two = targets(1, 1, total_timeout_s=0.001)
    held = router.pick("llm", "least-busy", two)  # never given back
    label = held.target.label or ""
    assert redis_client.zcard(keys.in_flight("llm", label)) == 1
    assert 0 < redis_client.pttl(keys.in_flight("llm", label)) <= 31_000


def test_latency_measures_unmeasured_deployments_first_then_prefers_the_fastest(backend: RouteBackend) -> None:
    router = Router(backend, random.Random(3))
    three = targets(1, 1, 1)
    seen = set()
    for _ in range(3):
        pick = router.pick("llm", "latency", three)
        seen.add(pick.target.label)
        router.done(pick, {"0": 0.5, "1": 0.05, "2": 0.3}[pick.target.label or ""])
    assert seen == {"0", "1", "2"}
    picks = Counter(router.pick("llm", "latency", three).target.label for _ in range(2000))
    fastest_share = picks["1"] / 2000
    assert fastest_share == pytest.approx(1 - EXPLORE_SHARE * 2 / 3, abs=0.03)
    assert picks["0"] > 0 and picks["2"] > 0  # still explored


def test_a_slowed_deployment_loses_its_place(backend: RouteBackend) -> None:
    router = Router(backend, random.Random(4))
    two = targets(1, 1)

    def observe(label: str, seconds: float, times: int) -> None:
        for _ in range(times):
            backend.observe("llm", label, seconds)

    observe("0", 0.05, 20)
    observe("1", 0.2, 20)
    assert Counter(router.pick("llm", "latency", two).target.label for _ in range(200)).most_common(1)[0][0] == "0"
    observe("0", 1.0, 20)  # its recent calls are slow now
    assert Counter(router.pick("llm", "latency", two).target.label for _ in range(200)).most_common(1)[0][0] == "1"


class Unreachable(MemoryRouteBackend):
    def claim_least_busy(self, provider: str, labels: Sequence[str], call_id: str, lease_s: float) -> int:
        raise RedisConnectionError("Connection refused")


def test_an_unreachable_redis_falls_back_to_weights() -> None:
    router = Router(Unreachable(), random.Random(5))
    picks = Counter(router.pick("llm", "least-busy", targets(1, 1)).target.label for _ in range(200))
    assert set(picks) == {"0", "1"}


def test_one_deployment_is_picked_without_any_state() -> None:
    router = Router(Unreachable())
    single = ProviderSettings.model_validate({"name": "llm", "class": "a.b:C"}).targets()
    pick = router.pick("llm", "least-busy", single)
    assert (pick.target.guard, pick.claim) == ("llm", None)
