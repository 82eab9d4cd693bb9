"""Poison messages end: a task whose run kills its worker process is dead-lettered after max_deliveries runs,
and its queue keeps flowing. Real prefork workers, a provider that SIGKILLs its own pool process."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stepper.errors import PoisonMessage
from stepper.infra import keys
from stepper.ops.deadletters import DeadLetterStore
from stepper.settings import DeadLetterSettings
from tests.integration.conftest import Fleet
from tests.support.providers import POISON, calls


def chat(text: str) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": text}]}


def test_a_task_that_kills_its_worker_is_dead_lettered_after_max_deliveries(
    start_fleet: Callable[..., Fleet],
) -> None:
    fleet = start_fleet(
        {
            "stepper_providers": {"killing": {"class": "tests.support.providers:KillingChat"}},
            "stepper_chains": {"chat": ["killing:m"]},
            "stepper_recovery": {"max_deliveries": 2},
        },
        name="poison",
        pool="prefork",
        concurrency=1,
        queues=["chat"],
    )
    poison = fleet.app.send_task("stepper.chat", kwargs=chat(f"a {POISON} pill"))
    with pytest.raises(PoisonMessage, match="runs killed their worker process"):
        poison.get(timeout=120)
    assert calls(fleet.redis, "killing") == 2  # the first run and one redelivery, then no more
    assert fleet.redis.get(keys.deliveries(poison.id)) is None  # forgotten once the task ended

    entry = next(e for e in DeadLetterStore(fleet.redis, DeadLetterSettings()).entries() if e.task_id == poison.id)
    assert entry.error.type == "PoisonMessage"

    healthy = [fleet.app.send_task("stepper.chat", kwargs=chat(f"fine {n}")) for n in range(3)]
    assert all("fine" in result.get(timeout=60)["output"]["message"]["content"] for result in healthy)
