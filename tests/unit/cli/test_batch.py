"""``stepper batch submit``: its usage errors, and its progress on a terminal and off one."""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stepper.cli import main


@dataclass
class Finished:
    """A task done as soon as it is sent, as a cached answer is."""

    id: str
    result: Any = None

    def ready(self) -> bool:
        return True

    def successful(self) -> bool:
        return True


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The job ids ``stepper batch submit`` hands the producer, in order."""
    ids: list[str] = []

    def submit(kind: str, args: dict[str, Any], *, priority: Any, correlation_id: str) -> Finished:
        ids.append(correlation_id)
        return Finished(f"task-{correlation_id}", {"answer": correlation_id})

    monkeypatch.setattr("stepper.producer.submit", submit)
    return ids


def write_jobs(path: Path, *ids: str) -> Path:
    chat = {"messages": [{"role": "user", "content": "hello"}]}
    path.write_text("".join(json.dumps({"id": i, "kind": "chat", "args": chat}) + "\n" for i in ids), encoding="utf-8")
    return path


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_window_must_be_at_least_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", "a")

    assert main(["batch", "submit", str(jobs), "--out", str(tmp_path / "out.jsonl"), "--window", "0"]) == 2

    assert "Error: Invalid value for '--window': 0 is not in the range x>=1." in capsys.readouterr().err


def test_a_missing_jobs_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "jobs.jsonl"

    assert main(["batch", "submit", str(missing), "--out", str(tmp_path / "out.jsonl")]) == 2

    assert f"Error: Invalid value for 'JOBS': File '{missing}' does not exist." in capsys.readouterr().err


def test_on_a_terminal_the_bar_counts_the_jobs_this_run_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sent: list[str]
) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", "a", "b", "c", "d")
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"id": "a", "status": "SUCCESS", "result": {}}) + "\n", encoding="utf-8")
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    assert main(["batch", "submit", str(jobs), "--out", str(out)]) == 0

    assert sent == ["b", "c", "d"]
    assert "[####################################]  100%  submitted 3  done 3  failed 0" in terminal.getvalue()


def test_off_a_terminal_progress_is_a_plain_line(
    tmp_path: Path, sent: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = write_jobs(tmp_path / "jobs.jsonl", "a", "b")

    assert main(["batch", "submit", str(jobs), "--out", str(tmp_path / "out.jsonl")]) == 0

    captured = capsys.readouterr()
    assert captured.err.startswith("submitted 2  done 2  failed 0  ") and "[" not in captured.err
    assert captured.out.startswith("submitted 2, succeeded 2, failed 0, already done 0 in ")
