"""Final outcomes: in-process hooks see them, a failing hook changes nothing, a stored result is not redone."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from stepper.outcomes import hooks
from stepper.outcomes import listeners as outcomes
from stepper.schemas import ChatRequest
from stepper.tasks import base

REQUEST = ChatRequest.model_validate({"messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture(autouse=True)
def no_hooks(redis_client: Any) -> Iterator[None]:
    hooks.clear()
    yield
    hooks.clear()


def test_hooks_see_successes_and_failures_and_cannot_break_them(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, str, object]] = []

    @hooks.on_success
    def record_success(kind: str, request: Any, result: dict[str, Any]) -> None:
        seen.append(("success", kind, result["output"]))

    @hooks.on_failure
    def record_failure(kind: str, request: Any, error: BaseException) -> None:
        seen.append(("failure", kind, type(error).__name__))

    @hooks.on_success
    def broken(kind: str, request: Any, result: dict[str, Any]) -> None:
        raise RuntimeError("a bug in a hook")

    outcomes.succeeded("t-1", "chat", REQUEST, {"output": {"x": 1}})
    outcomes.failed("t-2", "chat", {"messages": []}, ValueError("bad"), retries=0)
    assert seen == [("success", "chat", {"x": 1}), ("failure", "chat", "ValueError")]
    assert "on_success hook" in caplog.text and "a bug in a hook" in caplog.text


def test_a_redelivered_task_returns_its_stored_result(monkeypatch: pytest.MonkeyPatch, redis_client: Any) -> None:
    stored = {"kind": "chat", "output": {"from": "the result backend"}}

    class Task:
        request = SimpleNamespace(id="t-9", delivery_info={"redelivered": True}, retries=0)
        app = SimpleNamespace(state_client=lambda: redis_client, broker_kind="redis")

        def AsyncResult(self, task_id: str) -> Any:
            assert task_id == "t-9"
            return SimpleNamespace(state="SUCCESS", result=stored)

    def never(*_: Any) -> dict[str, Any]:
        raise AssertionError("the work was done again")

    monkeypatch.setattr(base, "serve", never)
    assert base.run_family(Task(), "chat", (), {"messages": [{"role": "user", "content": "hi"}]}) == stored  # type: ignore[arg-type]
