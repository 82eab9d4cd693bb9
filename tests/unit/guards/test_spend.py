"""Money: prices over usage, UTC day and month windows, the ledger on both backends, budgets and their words."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest
import redis
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError

from stepper.config import parse_stepper_settings
from stepper.guards.spend import (
    BudgetLine,
    Budgets,
    MemorySpendLedger,
    RedisSpendLedger,
    Scope,
    SpendLedger,
    configured_lines,
    periods,
    provider_lines,
)
from stepper.infra import keys
from stepper.settings import DEFAULT_CHAINS, Price, StepperSettings, Window

NOW = datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC)


def settings(**config: object) -> StepperSettings:
    return parse_stepper_settings(config)


@pytest.fixture(params=["memory", "redis"])
def ledger(request: pytest.FixtureRequest) -> SpendLedger:
    if request.param == "memory":
        return MemorySpendLedger()
    client: redis.Redis = request.getfixturevalue("redis_client")
    return RedisSpendLedger(client)


# ---- prices -----------------------------------------------------------------------------------------------


def test_cached_input_tokens_are_a_cheaper_part_of_the_input() -> None:
    price = Price(input_per_mtok=2.5, output_per_mtok=10.0, cached_input_per_mtok=1.25)
    usage = {"input_tokens": 2_000_000, "cached_input_tokens": 1_000_000, "output_tokens": 100_000}
    assert price.cost(usage) == pytest.approx(2.5 + 1.25 + 1.0)


def test_without_a_cached_price_cached_tokens_cost_the_input_price() -> None:
    price = Price(input_per_mtok=3.0, output_per_mtok=0.0)
    assert price.cost({"input_tokens": 1_000_000, "cached_input_tokens": 500_000}) == pytest.approx(3.0)


def test_missing_or_odd_counters_cost_nothing_and_cached_never_exceeds_input() -> None:
    price = Price(input_per_mtok=1.0, output_per_mtok=1.0, cached_input_per_mtok=0.0)
    assert price.cost({}) == 0
    assert price.cost({"truncated_messages": 3, "output_tokens": -5}) == 0
    assert price.cost({"input_tokens": 10, "cached_input_tokens": 50}) == 0  # all 10 cached


def test_every_model_of_the_default_llm_chains_on_a_paid_vendor_has_a_price() -> None:
    defaults = settings()
    for entry in DEFAULT_CHAINS["chat"]:
        if entry.split(":")[0] in {"openai", "gemini", "cohere"}:
            provider, model = entry.split(":")
            assert defaults.price_for(provider, model) is not None, entry


def test_prices_in_two_currencies_are_refused() -> None:
    with pytest.raises(Exception, match="several currencies"):
        settings(stepper_prices={"openai": {"gpt-4o": {"input_per_mtok": 1, "output_per_mtok": 1, "currency": "EUR"}}})


def test_a_currency_must_be_a_code() -> None:
    with pytest.raises(ValidationError):
        Price(input_per_mtok=1, output_per_mtok=1, currency="dollars")


# ---- windows ----------------------------------------------------------------------------------------------


def test_windows_are_the_utc_day_and_month_and_roll_over_the_year() -> None:
    current = periods(NOW)
    assert (current["day"].name, current["month"].name) == ("2026-12-31", "2026-12")
    assert current["day"].resets_at == current["month"].resets_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert periods(NOW + timedelta(seconds=31))["day"].name == "2027-01-01"


def test_a_local_time_is_read_in_utc() -> None:
    tokyo = datetime(2027, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=9)))  # 2026-12-31 23:00 UTC
    assert periods(tokyo)["day"].name == "2026-12-31"
    assert periods(datetime(2026, 2, 28, 23, tzinfo=UTC))["month"].resets_at == datetime(2026, 3, 1, tzinfo=UTC)


# ---- the ledger -------------------------------------------------------------------------------------------


def entries(scope: Scope, name: str, at: datetime) -> list[tuple[Scope, str, Window, str]]:
    current = periods(at)
    return [(scope, name, window, current[window].name) for window in ("day", "month")]


def test_a_charge_adds_to_every_scope_in_both_windows(ledger: SpendLedger) -> None:
    scopes: Sequence[tuple[Scope, str]] = [("provider", "openai"), ("key", "ab12cd34")]
    ledger.charge(scopes, 0.25, NOW)
    ledger.charge(scopes, 0.5, NOW)
    assert ledger.spent(entries("provider", "openai", NOW)) == pytest.approx([0.75, 0.75])
    assert ledger.spent(entries("key", "ab12cd34", NOW)) == pytest.approx([0.75, 0.75])
    assert ledger.spent(entries("provider", "gemini", NOW)) == [0, 0]


def test_a_new_day_starts_from_nothing_while_the_month_goes_on(ledger: SpendLedger) -> None:
    earlier = datetime(2026, 12, 30, 12, tzinfo=UTC)
    ledger.charge([("provider", "openai")], 1.0, earlier)
    ledger.charge([("provider", "openai")], 2.0, NOW)
    assert ledger.spent(entries("provider", "openai", NOW)) == pytest.approx([2.0, 3.0])


def test_redis_window_keys_expire_a_day_after_their_window(redis_client: redis.Redis) -> None:
    RedisSpendLedger(redis_client).charge([("model", "openai:gpt-4o")], 1.0, datetime.now(UTC))
    current = periods(datetime.now(UTC))
    for window in ("day", "month"):
        ttl_s = redis_client.ttl(keys.spend("model", "openai:gpt-4o", window, current[window].name))
        remaining_s = (current[window].resets_at - datetime.now(UTC)).total_seconds() + 86400
        assert 0 < ttl_s <= remaining_s + 1


# ---- budgets ----------------------------------------------------------------------------------------------


def test_a_spent_budget_names_itself_and_its_reset(ledger: SpendLedger) -> None:
    config = settings(stepper_providers={"openai": {"class": "stepper.providers.openai:OpenAIProvider",
                                                    "budget": {"per_day": 1.0, "per_month": 400.0}}})  # fmt: skip
    budgets = Budgets(ledger, config, clock=lambda: NOW)
    lines = provider_lines(config, "openai", "gpt-4o-mini")
    assert budgets.exhausted(lines) is None
    budgets.charge([("provider", "openai")], 0.6)
    assert budgets.exhausted(lines) is None
    budgets.charge([("provider", "openai")], 0.6)
    spent = budgets.exhausted(lines)
    assert spent is not None
    assert spent.message() == (
        "the daily budget of provider openai (1 USD) is spent (1.2 USD); it resets at 2027-01-01T00:00:00Z"
    )
    assert spent.resets_in_s == 30


def test_budgets_are_not_enforced_while_the_ledger_is_unreachable() -> None:
    class Down(MemorySpendLedger):
        def spent(self, entries: Sequence[tuple[Scope, str, Window, str]]) -> list[float]:
            raise RedisConnectionError("Connection refused")

    budgets = Budgets(Down(), settings(), clock=lambda: NOW)
    assert budgets.exhausted([BudgetLine("provider", "openai", "day", 0.001)]) is None


def test_configured_lines_list_providers_models_and_named_keys() -> None:
    config = settings(
        stepper_providers={"openai": {"class": "stepper.providers.openai:OpenAIProvider",
                                      "budget": {"per_month": 400.0}, "budgets": {"gpt-4o": {"per_day": 5.0}}}},
        stepper_gateway={"budget": {"per_day": 1.0}, "budgets": {"ab12cd34": {"per_month": 10.0}}},
    )  # fmt: skip
    lines = configured_lines(config)
    assert BudgetLine("provider", "openai", "month", 400.0) in lines
    assert BudgetLine("model", "openai:gpt-4o", "day", 5.0) in lines
    assert BudgetLine("key", "ab12cd34", "month", 10.0) in lines
    assert config.gateway.budget_for("ffffffff").per_day == 1.0


def test_gateway_budgets_are_named_by_identity_never_by_key() -> None:
    with pytest.raises(Exception, match="not a key's identity") as raised:
        settings(stepper_gateway={"budgets": {"stp_secret-key-value": {"per_day": 1.0}}})
    assert "stp_secret" not in str(raised.value)
