"""Worker logs: one JSON object per line with the task's context, and no secret in any line."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.integration.conftest import Fleet

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
