"""Money: what each provider, model and gateway key spent today and this month, and the budgets that cap it.

Every successful call is priced (``Price.cost`` over the vendor's real usage) and charged, in one Redis
transaction, to the provider, to ``provider:model`` and to the gateway key that submitted the task, for the
current UTC day and UTC month. The keys expire a day after their window ends. Before a provider is called, the
chain reads what its budgets' scopes spent (one MGET, only when a budget applies) and skips a provider whose
budget is spent (attempt outcome ``budget_exhausted``); the gateway refuses a key whose own budget is spent with
429. A budget is checked before a call and charged after it, so calls already in flight when it runs out can
overshoot it by at most one call's cost each.

When Redis is unreachable the check lets calls through and the charge is lost (both logged): a budget is a
guard rail, and stopping every call because the ledger is down would turn a Redis outage into a full outage.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from redis import Redis
from redis.exceptions import RedisError

from stepper.infra import keys
from stepper.settings import SpendBudget, StepperSettings, Window

log = logging.getLogger(__name__)

Scope = Literal["provider", "model", "key"]
#: The Celery header carrying the identity of the gateway key that submitted a task (never the key).
GATEWAY_KEY_HEADER = "stepper_gateway_key"
#: Window keys outlive their window by this much, so ``stepper status`` can still read yesterday's.
KEEP_AFTER_WINDOW = timedelta(days=1)
SCOPE_WORDS: dict[Scope, str] = {"provider": "provider", "model": "model", "key": "gateway key"}


@dataclass(frozen=True)
class Period:
    """One budget window as of a moment: ``day`` ``2026-12-01`` or ``month`` ``2026-12``, and when it resets."""

    window: Window
    name: str
    resets_at: datetime


def periods(now: datetime) -> dict[Window, Period]:
    """The UTC day and month ``now`` falls in."""
    now = now.astimezone(UTC)
    tomorrow = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    next_month = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return {
        "day": Period("day", now.strftime("%Y-%m-%d"), tomorrow),
        "month": Period("month", now.strftime("%Y-%m"), next_month),
    }


@dataclass(frozen=True)
class BudgetLine:
    """One cap: ``scope`` ``name`` may spend ``limit`` per ``window``."""

    scope: Scope
    name: str
    window: Window
    limit: float


@dataclass(frozen=True)
class BudgetUse:
    """What one budget line has spent in its current window, and when that window ends (UTC)."""

    scope: Scope
    name: str
    window: Window
    limit: float
    spent: float
    currency: str
    resets_at: str
    resets_in_s: float

    @property
    def fraction(self) -> float:
        return self.spent / self.limit

    def describe(self) -> str:
        """``the daily budget of provider openai (20 USD)``"""
        which = "daily" if self.window == "day" else "monthly"
        return f"the {which} budget of {SCOPE_WORDS[self.scope]} {self.name} ({self.limit:g} {self.currency})"

    def message(self) -> str:
        return f"{self.describe()} is spent ({self.spent:.6g} {self.currency}); it resets at {self.resets_at}"


class SpendLedger(Protocol):
    def spent(self, entries: Sequence[tuple[Scope, str, Window, str]]) -> list[float]:
        """What each ``(scope, name, window, period)`` spent so far (0 for nothing)."""

    def charge(self, scopes: Sequence[tuple[Scope, str]], amount: float, now: datetime) -> None:
        """Add ``amount`` to each scope's day and month of ``now``, atomically."""


class RedisSpendLedger:
    def __init__(self, client: Redis) -> None:
        self._client = client

    def spent(self, entries: Sequence[tuple[Scope, str, Window, str]]) -> list[float]:
        if not entries:
            return []
        values = self._client.mget([keys.spend(*entry) for entry in entries])
        return [float(value) if value is not None else 0.0 for value in values]

    def charge(self, scopes: Sequence[tuple[Scope, str]], amount: float, now: datetime) -> None:
        pipe = self._client.pipeline(transaction=True)
        for period in periods(now).values():
            expire_at = period.resets_at + KEEP_AFTER_WINDOW
            for scope, name in scopes:
                key = keys.spend(scope, name, period.window, period.name)
                pipe.incrbyfloat(key, amount)
                pipe.expireat(key, expire_at)
        pipe.execute()


class MemorySpendLedger:
    """The same ledger in one process (windows never expire here): for tests and development."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spent: dict[tuple[Scope, str, Window, str], float] = defaultdict(float)

    def spent(self, entries: Sequence[tuple[Scope, str, Window, str]]) -> list[float]:
        with self._lock:
            return [self._spent.get(entry, 0.0) for entry in entries]

    def charge(self, scopes: Sequence[tuple[Scope, str]], amount: float, now: datetime) -> None:
        with self._lock:
            for period in periods(now).values():
                for scope, name in scopes:
                    self._spent[(scope, name, period.window, period.name)] += amount


def lines_of(scope: Scope, name: str, budget: SpendBudget) -> list[BudgetLine]:
    return [BudgetLine(scope, name, window, limit) for window, limit in budget.limits().items()]


def provider_lines(settings: StepperSettings, provider: str, model: str) -> list[BudgetLine]:
    """The budgets a call to ``model`` on ``provider`` counts against: the provider's and the model's."""
    declared = settings.providers[provider]
    model_budget = declared.budgets.get(model)
    return lines_of("provider", provider, declared.budget) + (
        lines_of("model", f"{provider}:{model}", model_budget) if model_budget is not None else []
    )


def configured_lines(settings: StepperSettings) -> list[BudgetLine]:
    """Every budget the settings declare, for ``stepper status`` and the alerts: providers, models, and the
    gateway keys named in ``stepper_gateway.budgets`` (the default key budget has no name to show)."""
    lines: list[BudgetLine] = []
    for name, provider in sorted(settings.providers.items()):
        lines += lines_of("provider", name, provider.budget)
        for model, budget in sorted(provider.budgets.items()):
            lines += lines_of("model", f"{name}:{model}", budget)
    for identity, key_budget in sorted(settings.gateway.budgets.items()):
        lines += lines_of("key", identity, key_budget)
    return lines


def budget_uses(client: Redis, settings: StepperSettings) -> list[BudgetUse]:
    """Spend against every configured budget (``stepper status``, alerts). Raises RedisError when unreachable."""
    return Budgets(RedisSpendLedger(client), settings).uses(configured_lines(settings))


class Budgets:
    """Checks budgets before calls and charges spend after them, for one process."""

    def __init__(
        self, ledger: SpendLedger, settings: StepperSettings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._ledger = ledger
        self._currency = settings.currency()
        self._clock = clock
        self._failing_open = threading.Event()

    def uses(self, lines: Sequence[BudgetLine]) -> list[BudgetUse]:
        """What each line spent in its current window. Raises RedisError when the ledger is unreachable."""
        now = self._clock()
        current = periods(now)
        spent = self._ledger.spent([(line.scope, line.name, line.window, current[line.window].name) for line in lines])
        return [
            BudgetUse(
                line.scope,
                line.name,
                line.window,
                line.limit,
                round(amount, 9),
                self._currency,
                current[line.window].resets_at.isoformat().replace("+00:00", "Z"),
                (current[line.window].resets_at - now).total_seconds(),
            )
            for line, amount in zip(lines, spent, strict=True)
        ]

    def exhausted(self, lines: Sequence[BudgetLine]) -> BudgetUse | None:
        """The first budget of ``lines`` that is spent, or None (also when the ledger is unreachable)."""
        if not lines:
            return None
        try:
            uses = self.uses(lines)
        except RedisError as exc:
            if not self._failing_open.is_set():
                self._failing_open.set()
                log.warning("spend ledger unreachable (%s); budgets are not enforced until it is back", exc)
            return None
        self._failing_open.clear()
        return next((use for use in uses if use.spent >= use.limit), None)

    def charge(self, scopes: Sequence[tuple[Scope, str]], amount: float) -> None:
        """Add one call's cost to each scope; a lost charge is logged, never raised."""
        if amount <= 0:
            return
        try:
            self._ledger.charge(scopes, amount, self._clock())
        except RedisError as exc:
            log.warning("could not record a spend of %.6g %s (%s)", amount, self._currency, exc)
