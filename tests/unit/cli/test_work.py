"""``stepper submit``: the request inline or from an @file, refused while parsing when it is not JSON."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from stepper.cli import main

REQUEST = {"messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any, int]]:
    """What ``stepper submit`` hands the producer; each call answers task id ``task-1``."""
    calls: list[tuple[str, Any, int]] = []

    def submit(kind: str, request: Any, *, priority: int) -> SimpleNamespace:
        calls.append((kind, request, priority))
        return SimpleNamespace(id="task-1")

    monkeypatch.setattr("stepper.producer.submit", submit)
    return calls


def test_the_request_is_inline_json_or_an_at_file(
    tmp_path: Path, submitted: list[tuple[str, Any, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(REQUEST), encoding="utf-8")

    assert main(["submit", "chat", json.dumps(REQUEST), "--no-wait"]) == 0
    assert main(["submit", "chat", f"@{path}", "--no-wait", "--priority", "7"]) == 0

    assert submitted == [("chat", REQUEST, 5), ("chat", REQUEST, 7)]
    assert capsys.readouterr().out == "task-1\ntask-1\n"


@pytest.mark.parametrize(
    ("request_text", "error"),
    [
        ("{oops", "not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
        ("@/nonexistent/request.json", "cannot read /nonexistent/request.json (No such file or directory)"),
    ],
)
def test_a_request_that_cannot_be_read_as_json_is_a_usage_error(
    request_text: str, error: str, submitted: list[tuple[str, Any, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["submit", "chat", request_text]) == 2

    assert f"Error: Invalid value for 'REQUEST': {error}" in capsys.readouterr().err
    assert submitted == []


def test_an_unknown_priority_is_an_invalid_request(
    submitted: list[tuple[str, Any, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["submit", "chat", json.dumps(REQUEST), "--priority", "urgent"]) == 2

    assert capsys.readouterr().err.startswith("stepper: InvalidRequest: unknown priority 'urgent'")
    assert submitted == []


def test_cancel_records_each_revoke_where_every_worker_reads_it(
    redis_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from stepper.infra import revokes

    assert main(["cancel", "task-a", "task-b"]) == 0
    assert capsys.readouterr().out == "cancelled task-a\ncancelled task-b\n"
    assert revokes.revoked_among(redis_client, ["task-a", "task-b", "task-c"]) == {"task-a", "task-b"}
