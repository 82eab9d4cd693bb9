"""A workflow's state in a real Redis: one dispatch wins each piece, failures wait for resume."""

from __future__ import annotations

import pytest
import redis

from stepper.errors import InvalidRequest
from stepper.workflows.store import Meta, WorkflowStore

META = Meta("howto", {"frames": [{"b64": "aGVsbG8="}]}, 5, None)


@pytest.fixture
def store(redis_client: redis.Redis) -> WorkflowStore:
    return WorkflowStore(redis_client, 60)


def test_a_piece_is_claimed_once_and_never_after_it_is_done(store: WorkflowStore) -> None:
    store.create("w1", META)
    assert store.claim("w1", "write:0", "task-a")
    assert not store.claim("w1", "write:0", "task-b")  # a second advance sends nothing
    store.done("w1", "write:0", {"instruction": "Click **Save**."})
    assert not store.claim("w1", "write:0", "task-c")
    snapshot = store.load("w1")
    assert snapshot.done == {"write:0": {"instruction": "Click **Save**."}} and snapshot.running == {}


def test_a_failure_waits_for_resume_which_forgets_it(store: WorkflowStore) -> None:
    store.create("w1", META)
    store.claim("w1", "write:1", "task-a")
    store.failed("w1", "write:1", "ChainExhausted", "every provider failed", "task-a")
    snapshot = store.load("w1")
    assert snapshot.state == "WAITING" and snapshot.running == {}
    assert snapshot.failed["write:1"]["task_id"] == "task-a" and "write:1" in (snapshot.error or "")
    store.resumed("w1", list(snapshot.failed))
    resumed = store.load("w1")
    assert resumed.state == "RUNNING" and resumed.failed == {} and resumed.error is None
    assert store.claim("w1", "write:1", "task-b")


def test_the_state_expires_with_the_results(store: WorkflowStore, redis_client: redis.Redis) -> None:
    store.create("w1", META)
    store.done("w1", "steps", {"steps": []})
    assert 0 < redis_client.ttl(b"stepper:workflow:w1") <= 60


def test_an_unknown_id_is_an_invalid_request_saying_so(store: WorkflowStore) -> None:
    with pytest.raises(InvalidRequest, match="no workflow 'nope'"):
        store.load("nope")
