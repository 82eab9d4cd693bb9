"""The watchdog's judgement of a stall: messages must wait through two checks, not be seen waiting once."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from celery import bootsteps

from stepper.workers import watchdog
from stepper.workers.watchdog import Watchdog

STALL_S = 20.0


class Broker:
    """What the watchdog asks the broker: it answers, and ``waiting`` messages wait in the chat queue."""

    def __init__(self) -> None:
        self.waiting = 0

    def queue_depths(self, _app: Any, queues: list[str]) -> dict[str, dict[int, int]]:
        return {queue: {0: self.waiting if queue == "chat" else 0} for queue in queues}


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Broker:
    fake = Broker()
    monkeypatch.setattr(watchdog, "ping_broker", lambda _app: None)
    monkeypatch.setattr(watchdog, "queue_depths", fake.queue_depths)
    return fake


def idle_watchdog() -> tuple[Watchdog, float]:
    """A watchdog of a running consumer with free slots; and a time long after its last message."""
    queues = SimpleNamespace(consume_from={"chat": None, "ocr": None})
    worker = SimpleNamespace(
        app=SimpleNamespace(amqp=SimpleNamespace(queues=queues)),
        consumer=SimpleNamespace(blueprint=SimpleNamespace(state=bootsteps.RUN)),
        concurrency=4,
    )
    return Watchdog(worker, STALL_S), time.monotonic() + 10 * STALL_S


def test_messages_seen_waiting_once_by_a_long_idle_worker_are_not_a_stall(broker: Broker) -> None:
    """CI met this: a worker idle for minutes, checked just after a test published to its queue."""
    dog, now = idle_watchdog()
    broker.waiting = 3
    assert dog.stall_reason(now) is None


def test_messages_still_waiting_at_the_next_check_are_a_stall(broker: Broker) -> None:
    dog, now = idle_watchdog()
    broker.waiting = 3
    dog.stall_reason(now)
    broker.waiting = 5  # more came, none was taken
    reason = dog.stall_reason(now + dog.interval_s)
    assert reason is not None and reason.startswith("messages wait (chat 5) and it has free slots")


def test_a_consumer_taking_messages_between_checks_is_not_stalled(broker: Broker) -> None:
    dog, now = idle_watchdog()
    broker.waiting = 300
    dog.stall_reason(now)
    broker.waiting = 120  # malformed messages taken: no task_received, but the queue went down
    assert dog.stall_reason(now + dog.interval_s) is None
    assert dog.stall_reason(now + 2 * dog.interval_s) is not None  # and then it took none


def test_a_queue_that_emptied_between_checks_starts_over(broker: Broker) -> None:
    dog, now = idle_watchdog()
    broker.waiting = 3
    dog.stall_reason(now)
    broker.waiting = 0
    assert dog.stall_reason(now + dog.interval_s) is None
    broker.waiting = 3
    assert dog.stall_reason(now + 2 * dog.interval_s) is None


def test_a_task_received_between_checks_starts_over(broker: Broker) -> None:
    dog, now = idle_watchdog()
    broker.waiting = 3
    dog.stall_reason(now)
    watchdog._received()  # Celery's task_received
    assert dog.stall_reason(time.monotonic() + 1) is None  # received lately
    assert dog.stall_reason(time.monotonic() + 2 * STALL_S) is None  # idle again: seen waiting once
