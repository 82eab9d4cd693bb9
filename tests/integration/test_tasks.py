"""Each family end to end: called by name through real Redis and a real worker."""

from __future__ import annotations

from typing import Any

import pytest

import stepper
from stepper.errors import InvalidRequest
from stepper.families import FAMILIES
from stepper.samples import sample_requests
from stepper.schemas import KINDS, Kind, TaskResult
from tests.integration.conftest import Fleet
from tests.support.providers import calls

INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "report": ({"commit": {"sha": "not-a-sha", "message": "x", "files": []}}, "commit.sha"),
    "chat": ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    "ocr": ({"images": [{"b64": "!!!"}]}, "images.0.b64"),
    "steps": ({"frames": []}, "frames"),
    "vision": ({"image": {"url": "ftp://example.com/a.png"}}, "image.url"),
    "speech": ({"text": "hello", "format": "flac"}, "format"),
}


@pytest.mark.parametrize("kind", KINDS)
def test_each_family_runs_by_name(counting_fleet: Fleet, kind: Kind) -> None:
    before = calls(counting_fleet.redis, "counting")
    result = counting_fleet.app.send_task(f"stepper.{kind}", kwargs=sample_requests()[kind]).get(timeout=30)
    parsed = TaskResult.model_validate(result)
    assert parsed.kind == kind
    assert (parsed.provider, parsed.model) == ("counting", "test-model")
    assert [(a.provider, a.outcome) for a in parsed.attempts] == [("counting", "ok")]
    FAMILIES[kind].output_model.model_validate(parsed.output)
    assert calls(counting_fleet.redis, "counting") == before + 1


@pytest.mark.parametrize("kind", KINDS)
def test_invalid_request_fails_fast_without_calling_a_provider(counting_fleet: Fleet, kind: str) -> None:
    kwargs, field = INVALID[kind]
    before = calls(counting_fleet.redis, "counting")
    result = counting_fleet.app.send_task(f"stepper.{kind}", kwargs=kwargs)
    with pytest.raises(InvalidRequest, match=field.replace(".", r"\.")):
        result.get(timeout=30)
    assert result.state == "FAILURE"
    assert calls(counting_fleet.redis, "counting") == before


def test_positional_arguments_are_refused(counting_fleet: Fleet) -> None:
    result = counting_fleet.app.send_task("stepper.chat", args=["hello"])
    with pytest.raises(InvalidRequest, match="keyword arguments only"):
        result.get(timeout=30)


def test_producer_api_and_task_objects(counting_fleet: Fleet) -> None:
    request = {"messages": [{"role": "user", "content": "ping"}]}
    via_submit = stepper.submit("chat", request, priority="interactive").get(timeout=30)
    from stepper.tasks import chat  # as the README shows; submitting never loads the tasks itself

    via_delay = chat.delay(**request).get(timeout=30)
    assert via_submit["output"] == via_delay["output"]
    assert "ping" in via_submit["output"]["message"]["content"]


def test_submit_validates_in_the_producer(counting_fleet: Fleet) -> None:
    before = counting_fleet.redis.llen("chat")
    with pytest.raises(InvalidRequest, match="messages"):
        stepper.submit("chat", {"messages": "hello"})
    with pytest.raises(InvalidRequest, match="unknown kind"):
        stepper.submit("poem", {})  # type: ignore[arg-type]
    assert counting_fleet.redis.llen("chat") == before


def test_celery_link_and_link_error_still_work(counting_fleet: Fleet) -> None:
    """Celery's own callbacks: an immutable signature linked on success, another on failure."""
    app = counting_fleet.app
    on_success = app.signature("stepper.chat", kwargs={"messages": [{"role": "user", "content": "after ok"}]})
    on_failure = app.signature("stepper.chat", kwargs={"messages": [{"role": "user", "content": "after error"}]})
    good = app.signature("stepper.chat", kwargs={"messages": [{"role": "user", "content": "fine"}]})
    bad = app.signature("stepper.chat", kwargs={"messages": []})

    good.apply_async(link=on_success.set(immutable=True, task_id="linked-after-ok")).get(timeout=30)
    with pytest.raises(InvalidRequest):
        bad.apply_async(link_error=on_failure.set(immutable=True, task_id="linked-after-error")).get(timeout=30)

    assert app.AsyncResult("linked-after-ok").get(timeout=30)["output"]["message"]["content"].endswith("after ok")
    assert app.AsyncResult("linked-after-error").get(timeout=30)["output"]["message"]["content"].endswith("after error")
