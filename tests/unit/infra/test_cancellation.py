"""Task and call scopes: deadlines and revokes end calls by cutting them, from the enforcer's thread."""

from __future__ import annotations

import threading
import time

import pytest
from redis import Redis

from stepper.infra import cancellation, revokes
from stepper.infra.cancellation import Enforcer, TaskScope, current_call, enforcer, task_scope


def wait_until(condition: object, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.02)
    return False


def test_a_call_without_a_first_byte_is_cut_at_its_first_token_deadline() -> None:
    cut = threading.Event()
    with TaskScope().call(first_token_timeout_s=0.2, total_timeout_s=None) as call:
        call.attach(cut.set)
        assert wait_until(cut.is_set)
    assert call.ended == "first_token"


def test_the_first_byte_lifts_the_first_token_deadline_but_not_the_total() -> None:
    cut = threading.Event()
    with TaskScope().call(first_token_timeout_s=0.2, total_timeout_s=0.6) as call:
        call.attach(cut.set)
        call.first_byte()
        time.sleep(0.35)
        assert not cut.is_set() and call.ended is None
        assert wait_until(cut.is_set)
    assert call.ended == "total" and call.answered


def test_a_call_ends_at_the_task_deadline_when_it_comes_first() -> None:
    scope = TaskScope(deadline_at=time.monotonic() + 0.2)
    with scope.call(first_token_timeout_s=None, total_timeout_s=30) as call:
        assert wait_until(lambda: call.ended is not None)
    assert call.ended == "deadline"
    assert scope.remaining_s() == 0


def test_cancelling_a_task_cuts_its_open_calls_and_wakes_its_sleep() -> None:
    scope = TaskScope("t-1")
    cut = threading.Event()
    with scope.call(first_token_timeout_s=None, total_timeout_s=None) as call:
        call.attach(cut.set)
        threading.Timer(0.1, scope.cancel, args=("revoked",)).start()
        started = time.monotonic()
        scope.sleep(10)
        assert time.monotonic() - started < 5
        assert cut.is_set() and call.ended == "cancelled"
    assert scope.cancelled and scope.reason == "revoked"


def test_a_closer_attached_after_the_cut_runs_at_once() -> None:
    scope = TaskScope()
    scope.cancel("revoked")
    cut = threading.Event()
    with scope.call(first_token_timeout_s=None, total_timeout_s=None) as call:
        call.end("cancelled")
        call.attach(cut.set)
    assert cut.is_set()


def test_the_current_call_is_set_only_inside_it() -> None:
    assert current_call.get() is None
    with TaskScope().call(first_token_timeout_s=None, total_timeout_s=None) as call:
        assert current_call.get() is call
    assert current_call.get() is None


def test_a_revoke_recorded_in_redis_cancels_the_running_task(redis_client: Redis) -> None:
    with task_scope("running-task", None, redis_client) as scope, task_scope("other-task", None, redis_client) as other:
        revokes.record(redis_client, ["running-task"], keep_s=60)
        assert wait_until(lambda: scope.cancelled)
        assert scope.reason == "revoked"
        assert not other.cancelled
    assert "running-task" not in enforcer()._tasks


def test_a_task_waking_an_idle_enforcer_is_polled_for_revokes_an_interval_later_not_at_its_start(
    redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    polled: list[float] = []
    revoked_among = revokes.revoked_among

    def counted(client: Redis, task_ids: list[str]) -> set[str]:
        polled.append(time.monotonic())
        return revoked_among(client, task_ids)

    monkeypatch.setattr(revokes, "revoked_among", counted)
    idle = Enforcer()
    scope = TaskScope("started-task", None)
    started = time.monotonic()
    idle.watch_task(scope, redis_client)
    try:
        time.sleep(cancellation.REVOKE_POLL_S / 2)
        assert polled == []  # its worker checked the revokes when it received the task
        revokes.record(redis_client, ["started-task"], keep_s=60)
        assert wait_until(lambda: scope.cancelled)
        assert polled[0] - started >= cancellation.REVOKE_POLL_S
    finally:
        idle.forget_task(scope)
