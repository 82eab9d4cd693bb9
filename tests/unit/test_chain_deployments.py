"""A provider with several deployments: failover between them before the next provider, a breaker each, the
deployment in the attempts; and money: cost in usage, spend charged, a spent budget skipped."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from stepper.chain import ChainExecutor
from stepper.contracts import Provider, Reply
from stepper.errors import AuthError, ChainExhausted, ContextOverflow, Unavailable
from stepper.families import FAMILIES
from stepper.guards.admission import MemoryGuardBackend
from stepper.guards.breaker import ProviderGuard
from stepper.guards.routing import MemoryRouteBackend, Router
from stepper.guards.spend import Budgets, MemorySpendLedger, periods
from stepper.registry import Registry
from stepper.schemas import ChatOutput, ChatRequest, Kind, TaskResult
from stepper.settings import BreakerSettings
from tests.unit.factories import retry_settings, stepper_settings

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


class ByUrl(Provider):
    """Answers, or raises, by the deployment it was made for (its base URL): ``failures[url]``."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"chat"})
    failures: ClassVar[dict[str, Exception]] = {}
    calls: ClassVar[list[str]] = []

    def complete(self, request: ChatRequest, model: str) -> Reply[ChatOutput]:
        url = self.settings.base_url or "-"
        type(self).calls.append(url)
        if url in self.failures:
            raise self.failures[url]
        output = ChatOutput.model_validate({"message": {"content": f"from {url}"}, "finish_reason": "stop"})
        return Reply(output, {"input_tokens": 1000, "cached_input_tokens": 400, "output_tokens": 100})


class Other(ByUrl):
    failures: ClassVar[dict[str, Exception]] = {}
    calls: ClassVar[list[str]] = []


def deployments(*urls: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"base_url": url, "label": url.rsplit("/", 1)[-1], **extra} for url in urls]


class Fleet:
    """One chain executor over memory backends; ``ByUrl.failures`` decides what each deployment does."""

    def __init__(self, spec: dict[str, Any], *, other: dict[str, Any] | None = None, **settings: Any) -> None:
        ByUrl.failures, ByUrl.calls, Other.failures, Other.calls = {}, [], {}, []
        providers = {"multi": spec, "other": other or {"base_url": "http://other/o"}}
        self.settings = stepper_settings(
            providers=providers, chains={"chat": ["multi:m", "other:o"]}, retry=retry_settings(), **settings
        )
        registry = Registry()
        registry.register("chat", "multi", ByUrl)
        registry.register("chat", "other", Other)
        self.guards = MemoryGuardBackend()
        self.routes = MemoryRouteBackend()
        self.ledger = MemorySpendLedger()
        guard = ProviderGuard(self.guards, self.settings.breaker, max_wait_s=0)
        self.executor = ChainExecutor(
            self.settings,
            registry,
            guard,
            sleep=lambda seconds: None,
            router=Router(self.routes, random.Random(7)),
            budgets=Budgets(self.ledger, self.settings, clock=lambda: NOW),
        )

    def run(self, gateway_key: str | None = None) -> TaskResult:
        family = FAMILIES["chat"]
        parsed = family.parse({"messages": [{"role": "user", "content": "hi"}]})
        return self.executor.run(family, parsed, gateway_key=gateway_key)

    def spent(self, scope: str, name: str, window: str = "day") -> float:
        period = periods(NOW)[window]  # type: ignore[index]
        return self.ledger.spent([(scope, name, period.window, period.name)])[0]  # type: ignore[list-item]


def served_by(result: TaskResult) -> list[tuple[str, str | None, str]]:
    return [(attempt.provider, attempt.deployment, attempt.outcome) for attempt in result.attempts]


def test_a_failing_deployment_is_left_for_another_of_the_same_provider() -> None:
    spec = {"deployments": deployments("http://a/a", "http://b/b"), "strategy": "least-busy"}
    fleet = Fleet(spec, breaker=BreakerSettings(fail_max=5))
    ByUrl.failures["http://a/a"] = Unavailable("503 from a")
    results = []
    while fleet.guards.breaker_storage("multi#a").state != "open":
        results.append(fleet.run())
        assert len(results) < 200
    # No task failed: each call a took failed over to b at once.
    assert {(result.provider, result.attempts[-1].deployment) for result in results} == {("multi", "b")}
    assert ByUrl.calls.count("http://a/a") == 5  # fail_max
    # a's own breaker is open: later calls routed to a are rejected before reaching it; b's stays closed.
    later = [served_by(fleet.run()) for _ in range(20)]
    assert ByUrl.calls.count("http://a/a") == 5
    assert any(("multi", "a", "circuit_open") in attempts for attempts in later)
    assert fleet.guards.breaker_storage("multi#b").state == "closed"


def test_the_chain_moves_on_only_when_every_deployment_failed() -> None:
    fleet = Fleet({"deployments": deployments("http://a/a", "http://b/b")})
    ByUrl.failures.update({"http://a/a": Unavailable("503 from a"), "http://b/b": AuthError("401 from b")})
    result = fleet.run()
    assert result.provider == "other"
    tried = served_by(result)
    assert {(deployment, outcome) for _, deployment, outcome in tried[:-1]} >= {
        ("a", "retryable_error"),
        ("b", "permanent_error"),
    }
    assert tried[-1] == ("other", None, "ok")


def test_a_request_the_model_cannot_take_does_not_try_the_other_deployments() -> None:
    fleet = Fleet({"deployments": deployments("http://a/a", "http://b/b")})
    too_large = ContextOverflow("too long for m")
    ByUrl.failures.update({"http://a/a": too_large, "http://b/b": too_large})
    result = fleet.run()
    assert result.provider == "other"
    assert len(ByUrl.calls) == 1


def test_the_last_deployment_left_gets_the_providers_retries() -> None:
    fleet = Fleet({"deployments": deployments("http://a/a", "http://b/b")}, breaker=BreakerSettings(fail_max=50))
    ByUrl.failures.update({"http://a/a": Unavailable("503 a"), "http://b/b": Unavailable("503 b")})
    with pytest.raises(ChainExhausted):
        Other.failures["http://other/o"] = Unavailable("503 other")
        fleet.run()
    # one call to the first picked, then the provider's two tries of the one left
    assert sorted(Counter(ByUrl.calls).values()) == [1, 2]


def test_weighted_deployments_share_calls_by_weight() -> None:
    spec = {"deployments": [{"base_url": "http://a/a", "weight": 3}, {"base_url": "http://b/b", "weight": 1}]}
    fleet = Fleet(spec)
    results = [fleet.run() for _ in range(2000)]
    share = sum(result.attempts[-1].deployment == "0" for result in results) / len(results)
    assert 0.70 < share < 0.80  # 3 : 1 -> 0.75


def test_a_provider_without_deployments_records_none_and_keeps_its_guard_name() -> None:
    fleet = Fleet({"base_url": "http://single/s"}, breaker=BreakerSettings(fail_max=1))
    ByUrl.failures["http://single/s"] = Unavailable("503")
    result = fleet.run()
    assert served_by(result)[0] == ("multi", None, "retryable_error")
    assert fleet.guards.breaker_storage("multi").state == "open"


def test_usage_carries_the_cost_and_spend_is_charged_to_provider_model_and_key() -> None:
    price = {"input_per_mtok": 1.0, "output_per_mtok": 10.0, "cached_input_per_mtok": 0.5}
    fleet = Fleet({"base_url": "http://single/s", "prices": {"m": price}})
    result = fleet.run(gateway_key="ab12cd34")
    # 600 fresh input at 1.0, 400 cached at 0.5, 100 output at 10.0, per million
    expected = (600 * 1.0 + 400 * 0.5 + 100 * 10.0) / 1e6
    assert result.usage["cost"] == pytest.approx(expected)
    assert result.usage["currency"] == "USD"
    assert result.usage["cached_input_tokens"] == 400
    for scope, name in (("provider", "multi"), ("model", "multi:m"), ("key", "ab12cd34")):
        assert fleet.spent(scope, name) == pytest.approx(expected)
        assert fleet.spent(scope, name, "month") == pytest.approx(expected)


def test_a_spent_provider_budget_moves_the_chain_on_and_says_which_and_when() -> None:
    price = {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}
    fleet = Fleet({"base_url": "http://single/s", "prices": {"m": price}, "budget": {"per_day": 1.0}})
    first = fleet.run()  # 1.1 spent: over, found by the next call's check
    assert first.provider == "multi"
    second = fleet.run()
    assert second.provider == "other"
    skipped = second.attempts[0]
    assert (skipped.provider, skipped.outcome) == ("multi", "budget_exhausted")
    assert "daily budget of provider multi (1 USD) is spent" in (skipped.error or "")
    assert "resets at 2026-12-02T00:00:00Z" in (skipped.error or "")
    assert ByUrl.calls == ["http://single/s"]


def test_a_model_budget_caps_that_model_only() -> None:
    price = {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}
    spec = {"base_url": "http://single/s", "prices": {"m": price}, "budgets": {"m": {"per_month": 0.5}}}
    fleet = Fleet(spec)
    fleet.run()
    assert fleet.run().attempts[0].outcome == "budget_exhausted"
    assert "monthly budget of model multi:m" in (fleet.run().attempts[0].error or "")


def test_stepper_prices_override_the_providers() -> None:
    fleet = Fleet(
        {"base_url": "http://single/s", "prices": {"m": {"input_per_mtok": 1.0, "output_per_mtok": 1.0}}},
        prices={"multi": {"m": {"input_per_mtok": 0.0, "output_per_mtok": 0.0}}},
    )
    assert fleet.run().usage["cost"] == 0


def test_a_deployment_without_its_key_is_left_out_and_the_others_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY_A", "sk-a")
    monkeypatch.delenv("KEY_B", raising=False)
    spec = {"deployments": [{"label": "a", "api_key_env": "KEY_A"}, {"label": "b", "api_key_env": "KEY_B"}]}
    fleet = Fleet(spec)
    assert {fleet.run().attempts[-1].deployment for _ in range(20)} == {"a"}
