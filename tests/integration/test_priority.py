"""Priorities are real on Redis: interactive work overtakes a batch backlog."""

from __future__ import annotations

from collections.abc import Callable

from tests.integration.conftest import Fleet
from tests.support.providers import run_order

BACKLOG = 8


def test_interactive_task_overtakes_a_queued_batch_backlog(start_fleet: Callable[..., Fleet]) -> None:
    fleet = start_fleet({"stepper_chains": {"chat": ["slow:slow-model"]}}, name="priority", concurrency=1)
    chat = fleet.app.signature("stepper.chat")

    def send(label: str, priority: str) -> object:
        return chat.clone(kwargs={"messages": [{"role": "user", "content": label}]}).apply_async(priority=priority)

    backlog = [send(f"batch-{n}", "batch") for n in range(BACKLOG)]
    urgent = send("interactive", "interactive")
    urgent.get(timeout=60)  # type: ignore[attr-defined]
    for result in backlog:
        result.get(timeout=60)  # type: ignore[attr-defined]

    order = run_order(fleet.redis)
    assert sorted(order) == sorted([*(f"batch-{n}" for n in range(BACKLOG)), "interactive"])
    # At most the task running and the one reserved (prefetch 1) when it arrived go first.
    assert order.index("interactive") <= 2, order
    # And the batch backlog itself stays in submission order.
    assert [label for label in order if label != "interactive"] == [f"batch-{n}" for n in range(BACKLOG)]


def test_ten_levels_land_in_ten_lists(start_fleet: Callable[..., Fleet]) -> None:
    """kombu's default four buckets would merge levels; stepper's transport options keep all ten apart."""
    fleet = start_fleet({"stepper_chains": {"chat": ["slow:slow-model"]}}, name="levels", queues=["report"])
    for level in range(10):
        fleet.app.send_task(
            "stepper.chat", kwargs={"messages": [{"role": "user", "content": str(level)}]}, priority=level
        )
    sep = "\x06\x16"  # kombu's default separator, kept on purpose (see shared pitfalls)
    depths = [fleet.redis.llen("chat" if level == 0 else f"chat{sep}{level}") for level in range(10)]
    assert depths == [1] * 10


def test_a_backlog_on_one_queue_does_not_starve_another_at_the_same_level(
    start_fleet: Callable[..., Fleet],
) -> None:
    """kombu polls the queues of one level in an order: a fixed one served every report queued before the chat
    sent after them (the report queue comes first), so a busy kind held up every other kind."""
    fleet = start_fleet({"stepper_mode": "mock"}, name="fair", concurrency=1)
    report = {"commit": {"sha": "0" * 40, "message": "m", "author": "a", "files": []}, "repository": "r/r"}
    backlog = [fleet.app.send_task("stepper.report", kwargs={**report, "repository": f"r/{n}"}) for n in range(200)]
    chat = fleet.app.send_task("stepper.chat", kwargs={"messages": [{"role": "user", "content": "fair"}]})
    chat.get(timeout=120)
    for result in backlog:
        result.get(timeout=120)
    before = [result for result in backlog if result.date_done < chat.date_done]
    assert len(before) < len(backlog) / 2, f"{len(before)} of {len(backlog)} reports were served before the chat"
