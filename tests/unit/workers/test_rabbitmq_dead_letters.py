"""RabbitMQ's dead letters as stepper records them: task, kind, request and RabbitMQ's reason from x-death."""

from __future__ import annotations

import json

from stepper.ops.deadletters_memory import MemoryDeadLetterStore
from stepper.settings import DeadLetterSettings
from stepper.workers.rabbitmq_dead_letters import ERROR_TYPE, death_of, record

REQUEST = {"messages": [{"role": "user", "content": "hi"}]}


def headers(reason: str, count: int) -> dict[str, object]:
    """What RabbitMQ adds to a Celery message it dead-letters (newest death first)."""
    return {
        "task": "stepper.chat",
        "id": "task-1",
        "retries": 2,
        "x-first-death-reason": reason,
        "x-first-death-queue": "chat",
        "x-death": [{"reason": reason, "queue": "chat", "count": count, "exchange": "chat"}],
    }


def test_a_message_over_the_delivery_limit_is_recorded_with_its_reason_and_request() -> None:
    store = MemoryDeadLetterStore(DeadLetterSettings())
    entry_id = record(store, headers("delivery_limit", 11), json.dumps([[], REQUEST, {}]).encode())
    entry = store.require(entry_id)
    assert (entry.task_id, entry.kind, entry.retries, entry.error.type) == ("task-1", "chat", 2, ERROR_TYPE)
    assert entry.request == REQUEST
    assert "from queue 'chat': delivery_limit" in entry.error.message
    assert "delivered 11 times" in entry.error.message


def test_an_unreadable_body_is_kept_as_text_for_inspection() -> None:
    store = MemoryDeadLetterStore(DeadLetterSettings())
    entry = store.require(record(store, headers("rejected", 1), b'{"no": "protocol"}'))
    assert entry.request == {"unreadable_body": '{"no": "protocol"}'}
    assert "a worker refused it" in entry.error.message


def test_death_without_headers_is_unknown_not_an_error() -> None:
    assert death_of({}) == ("unknown", "?", 0)
