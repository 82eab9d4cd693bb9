"""Worker logs: one JSON object per line with the task's context, no secret in any line, one line per task."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest

from stepper.errors import InvalidRequest
from tests.integration.conftest import Fleet
from tests.support.waiting import wait_until

PLANTED = "sk-planted-secret-4242-abcdef"


def test_json_lines_carry_context_and_no_secret(start_fleet: Callable[..., Fleet]) -> None:
    fleet = start_fleet(
        {
            "stepper_providers": {
                "leaky": {"class": "tests.support.providers:LeakyChat", "api_key_env": "LEAKY_KEY"},
            },
            "stepper_chains": {"chat": ["leaky:leaky-model"]},
        },
        name="logs",
        env={"STEPPER_LOG_FORMAT": "json", "LEAKY_KEY": PLANTED},
    )
    result = fleet.app.send_task(
        "stepper.chat",
        kwargs={"messages": [{"role": "user", "content": "hello"}]},
        headers={"stepper_correlation_id": "corr-123"},
    )
    result.get(timeout=30)
    fleet.worker.stop()  # flush everything it had to say

    log = fleet.worker.log()
    assert PLANTED not in log and "a-token-nobody-configured-987" not in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    leaky = [line for line in lines if line["logger"] == "tests.leaky"]
    assert [line["message"] for line in leaky] == [
        "calling with key [redacted]",
        "header Authorization: Bearer [redacted]",
    ]
    for line in leaky:
        assert line["task_id"] == result.id and line["task"] == "stepper.chat"
        assert (line["kind"], line["provider"], line["correlation_id"]) == ("chat", "leaky", "corr-123")
    [ended] = [line for line in lines if line["logger"] == "stepper.tasks"]
    assert ended["message"].startswith(f"Task stepper.chat[{result.id}] succeeded after ")
    assert (ended["task_id"], ended["correlation_id"]) == (result.id, "corr-123")


def test_each_task_gets_one_line_naming_who_answered_never_the_answer(gateway_fleet: Fleet) -> None:
    """Celery's "received" and "succeeded in <result>" lines give way to stepper's own, at INFO: one per task,
    without the answer (user content), with the failure's reason when it failed."""
    ok = gateway_fleet.app.send_task("stepper.chat", kwargs={"messages": [{"role": "user", "content": "log me once"}]})
    answer = ok.get(timeout=30)
    bad = gateway_fleet.app.send_task("stepper.chat", kwargs={"messages": []})
    with pytest.raises(InvalidRequest):
        bad.get(timeout=30)
    wait_until(lambda: f"[{bad.id}] failed" in gateway_fleet.worker.log(), "the failed task's line")

    log = gateway_fleet.worker.log()
    [line] = [line for line in log.splitlines() if ok.id in line]
    who = f"{answer['provider']} {answer['model']}"
    assert re.search(rf"Task stepper\.chat\[{ok.id}\] succeeded after \d+\.\d{{3}}s: {who}, 1 attempt$", line), line
    assert answer["output"]["message"]["content"] not in log
    [line] = [line for line in log.splitlines() if bad.id in line]
    why = "InvalidRequest: invalid chat request: messages"
    assert re.search(rf"Task stepper\.chat\[{bad.id}\] failed after \d+\.\d{{3}}s: {why}", line), line
