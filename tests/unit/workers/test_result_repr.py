"""The text of a result in its task-succeeded event: Celery's own, made only when read."""

from __future__ import annotations

import pickle
import uuid
import weakref
from typing import Any

import pytest
from celery import Celery
from celery.app import trace
from celery.utils.saferepr import saferepr
from kombu.utils.json import dumps

from stepper.workers.result_repr import DeferredRepr, defer_result_repr, deferred_saferepr

RESULT = {
    "kind": "chat", "provider": "mock", "model": "mock-chat-1", "cached": False,
    "output": {"text": "a reply that runs on " * 10, "finish_reason": "stop"},
    "attempts": [{"run": 1, "provider": "mock", "model": "mock-chat-1", "outcome": "ok", "error": None, "ms": 0.1}],
    "elapsed_ms": 1.5,
}  # fmt: skip


class CountedRepr:
    """A value whose repr counts how often it was made."""

    made = 0

    def __repr__(self) -> str:
        CountedRepr.made += 1
        return "<counted>"


@pytest.mark.parametrize("maxlen", [None, 16, 160])
def test_every_reader_gets_celerys_text(maxlen: int | None) -> None:
    text = saferepr(RESULT, maxlen)
    assert str(DeferredRepr(RESULT, maxlen)) == text
    assert f"{DeferredRepr(RESULT, maxlen)}" == text
    assert repr(DeferredRepr(RESULT, maxlen)) == repr(text)
    # The event, as kombu's JSON encoder writes it; and a prefork child's result, as its parent unpickles it.
    assert dumps({"result": DeferredRepr(RESULT, maxlen)}) == dumps({"result": text})
    unpickled = pickle.loads(pickle.dumps(DeferredRepr(RESULT, maxlen)))
    assert type(unpickled) is str and unpickled == text


def test_the_text_is_made_once_and_only_when_read() -> None:
    CountedRepr.made = 0
    value = CountedRepr()
    deferred = DeferredRepr([value], 160)
    assert CountedRepr.made == 0
    assert str(deferred) == "[<counted>]" == str(deferred)
    assert CountedRepr.made == 1
    # Once made, the text is all it holds: an event kept back holds no result.
    gone = weakref.ref(value)
    del value
    assert gone() is None


def test_celerys_tracer_holds_the_deferred_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tracer looks ``saferepr`` up in ``celery.app.trace`` for each result: if a Celery release stops
    doing so, this fails and the deferral silently does nothing."""
    monkeypatch.setattr(trace, "saferepr", trace.saferepr)  # restored after the test
    app = Celery("result-repr", set_as_current=False)
    answer = app.task(name="answer", shared=False)(_answer)
    defer_result_repr(app.conf)
    returned, info, _, text = trace.trace_task(answer, str(uuid.uuid4()), (), {}, {}, app=app)
    assert info is None and returned == RESULT
    assert isinstance(text, DeferredRepr)
    assert str(text) == saferepr(RESULT, answer.resultrepr_maxsize)


def _answer() -> dict[str, Any]:
    return RESULT


@pytest.mark.parametrize(("serializer", "deferred"), [("json", True), ("yaml", False)])
def test_only_a_json_event_defers(monkeypatch: pytest.MonkeyPatch, serializer: str, deferred: bool) -> None:
    monkeypatch.setattr(trace, "saferepr", trace.saferepr)
    conf: Any = Celery("result-repr", set_as_current=False, config_source={"event_serializer": serializer}).conf
    defer_result_repr(conf)
    assert (trace.saferepr is deferred_saferepr) is deferred


def test_a_caller_passing_seen_gets_the_text_at_once() -> None:
    seen = {id(RESULT)}
    assert deferred_saferepr(RESULT, 160, 3, seen) == saferepr(RESULT, 160, 3, {id(RESULT)})
