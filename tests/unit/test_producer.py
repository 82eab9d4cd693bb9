"""``stepper.submit`` validates a request once: here, or where the caller already did (the gateway)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from celery.result import AsyncResult

from stepper import producer
from stepper.errors import InvalidRequest
from stepper.families import FAMILIES
from stepper.schemas.chat import ChatRequest
from stepper.schemas.common import TaskRequest

REQUEST = {"messages": [{"role": "user", "content": "hello"}], "temperature": 0.7}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dict[str, Any], TaskRequest]]:
    """What ``submit`` hands on to be sent: the request as given and the model it was validated into."""
    handed: list[tuple[dict[str, Any], TaskRequest]] = []

    def send(app: Any, kind: str, request: dict[str, Any], parsed: TaskRequest, **_: Any) -> AsyncResult:
        handed.append((request, parsed))
        return AsyncResult("sent", app=app)

    monkeypatch.setattr(producer, "_send", send)
    return handed


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every chat request validated (``ChatRequest.model_validate``, what ``FAMILIES["chat"].parse`` runs)."""
    seen: list[dict[str, Any]] = []
    validate = ChatRequest.model_validate

    def counting(value: Any, **options: Any) -> ChatRequest:
        seen.append(dict(value))
        return validate(value, **options)

    monkeypatch.setattr(ChatRequest, "model_validate", counting)
    return seen


def test_a_request_is_validated_when_it_is_submitted(
    sent: list[tuple[dict[str, Any], TaskRequest]], validations: list[dict[str, Any]]
) -> None:
    producer.submit("chat", REQUEST)
    assert validations == [REQUEST]
    assert sent[0][0] == REQUEST
    with pytest.raises(InvalidRequest, match="messages"):
        producer.submit("chat", {"messages": []})


def test_a_request_the_caller_validated_is_not_validated_again(
    sent: list[tuple[dict[str, Any], TaskRequest]], validations: list[dict[str, Any]]
) -> None:
    parsed = cast(TaskRequest, FAMILIES["chat"].parse(REQUEST))
    validations.clear()
    producer.submit("chat", REQUEST, parsed=parsed)
    assert validations == []
    assert sent == [(REQUEST, parsed)]
