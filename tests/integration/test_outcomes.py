"""A task's final outcome delivered: the caller's signed webhook, and the dead-letter store with replay."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from stepper.errors import ChainExhausted, InvalidRequest
from stepper.ops.deadletters import DeadLetterStore, replay
from stepper.settings import DeadLetterSettings
from tests.integration.conftest import COUNTING_CHAINS, Fleet
from tests.integration.test_webhooks import SECRET, WEBHOOK_SETTINGS, assert_signed, receiver
from tests.support.fake_http import FakeServer
from tests.support.waiting import wait_until

__all__ = ["receiver"]  # a fixture, used by name


@pytest.fixture(scope="module")
def delivering_fleet(start_fleet: Callable[..., Fleet]) -> Fleet:
    return start_fleet(
        {
            "stepper_webhooks": WEBHOOK_SETTINGS,
            "stepper_chains": {**COUNTING_CHAINS, "chat": ["failing:down-model"], "report": ["counting:test-model"]},
            "stepper_retry": {"attempts_per_provider": 1, "task_max_retries": 0},
        },
        name="outcomes",
        env={"STEPPER_WEBHOOK_SECRET": SECRET},
    )


def test_success_and_failure_are_called_back_signed(delivering_fleet: Fleet, receiver: FakeServer) -> None:
    url = f"{receiver.url}/hook"
    ok = delivering_fleet.app.send_task(
        "stepper.ocr", kwargs={"images": [{"b64": "aGVsbG8="}], "callback_url": url, "cache": "bypass"}
    )
    ok.get(timeout=30)
    bad = delivering_fleet.app.send_task("stepper.chat", kwargs={"messages": [], "callback_url": url})
    with pytest.raises(InvalidRequest):
        bad.get(timeout=30)
    wait_until(lambda: len(receiver.requests) == 2, "two callbacks")
    bodies = {}
    for request in receiver.requests:
        assert_signed(request)
        bodies[request.headers["stepper-event"]] = json.loads(request.body)
    assert bodies["task.succeeded"]["task_id"] == ok.id and bodies["task.succeeded"]["status"] == "SUCCESS"
    assert bodies["task.succeeded"]["result"]["kind"] == "ocr"
    assert bodies["task.failed"]["task_id"] == bad.id
    assert bodies["task.failed"]["error"]["type"] == "InvalidRequest"


def test_a_final_failure_is_dead_lettered_and_replayable(delivering_fleet: Fleet) -> None:
    store = DeadLetterStore(delivering_fleet.redis, DeadLetterSettings())
    failed = delivering_fleet.app.send_task("stepper.chat", kwargs={"messages": [{"role": "user", "content": "x"}]})
    with pytest.raises(ChainExhausted):
        failed.get(timeout=30)
    wait_until(lambda: any(entry.task_id == failed.id for entry in store.list()), "the dead letter")
    (entry,) = [entry for entry in store.list() if entry.task_id == failed.id]
    assert entry.kind == "chat" and entry.error.type == "ChainExhausted"
    assert [attempt["outcome"] for attempt in entry.attempts] == ["retryable_error"]

    new_id = replay(store, entry.id, submit=lambda kind, request: delivering_fleet.app.send_task(
        f"stepper.{kind}", kwargs=request))  # fmt: skip
    with pytest.raises(ChainExhausted):  # the provider is still down: the replay fails too, and is recorded
        delivering_fleet.app.AsyncResult(new_id).get(timeout=30)
    replayed = store.get(entry.id)
    assert replayed is not None and [link.task_id for link in replayed.replays] == [new_id]
    wait_until(lambda: any(other.task_id == new_id for other in store.list()), "the replay's own dead letter")
