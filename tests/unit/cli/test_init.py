"""The ``stepper`` root: what main() returns and prints, the command list, and a --help that never loads Celery."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from stepper.cli import main
from stepper.cli import stepper as root_command

COMMANDS = [
    "providers",
    "submit",
    "cancel",
    "voices",
    "worker",
    "fleet",
    "status",
    "health",
    "metrics",
    "flower",
    "alerts",
    "dlq",
    "batch",
    "gateway",
    "workflow",
    "demo",
]
CHAT = '{"messages": [{"role": "user", "content": "hello"}]}'


@pytest.mark.parametrize("option", ["--help", "-h"])
def test_help_lists_every_command(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([option]) == 0

    listing = capsys.readouterr().out.split("Commands:\n", 1)[1]
    assert sorted(line.split()[0] for line in listing.splitlines()) == sorted(COMMANDS)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["nope"], "No such command 'nope'."),
        (["providers", "extra"], "Got unexpected extra argument (extra)"),
        (["submit", "poem", "{}"], "Invalid value for '{report|chat|ocr|steps|vision|speech}': 'poem' is not one of"),
        (["submit", "chat", CHAT, "--timeout", "soon"], "Invalid value for '--timeout': 'soon' is not a valid float."),
        (["worker"], "Missing option '--profile'."),
        (["fleet", "down"], "Invalid value for '{up}': 'down' is not 'up'."),
        (["dlq", "show"], "Missing argument 'ID'."),
        (["gateway", "--port", "web"], "Invalid value for '--port': 'web' is not a valid integer."),
    ],
)
def test_a_usage_error_returns_2_with_the_usage_and_the_error_on_stderr(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("Usage: stepper")
    assert f"Error: {error}" in captured.err


def test_no_command_returns_2_with_the_help_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2

    captured = capsys.readouterr()
    assert captured.out == "" and "Commands:" in captured.err


def test_a_stepper_error_returns_2_with_its_type_and_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--profile", "gpu"]) == 2  # refused before anything is executed

    assert capsys.readouterr().err == "stepper: ConfigError: no worker profile 'gpu'; profiles are llm, cpu, ops\n"


def test_ctrl_c_returns_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("stepper.config.current_settings", interrupted)

    assert main(["providers"]) == 130


# What README.md, scripts/run-local.sh and deploy/ run: each must parse, down to the command that would run.
DOCUMENTED = [
    ("stepper providers", "providers"),
    ("stepper voices", "voices"),
    (f"stepper submit chat '{CHAT}' --priority interactive", "submit"),
    (f"stepper submit chat '{CHAT}'", "submit"),
    ("stepper batch submit jobs.jsonl --out results.jsonl --window 200 --skip-invalid --timeout 600", "batch submit"),
    ("stepper batch status results.jsonl", "batch status"),
    ("stepper gateway --host 0.0.0.0 --port 8000", "gateway"),
    ("stepper gateway --host 127.0.0.1 --port 8080", "gateway"),
    ("stepper gateway new-key", "gateway new-key"),
    ("stepper worker --profile llm", "worker"),
    ("stepper worker --profile cpu", "worker"),
    ("stepper worker --profile ops", "worker"),
    ("stepper fleet up", "fleet"),
    ("stepper status", "status"),
    ("stepper health", "health"),
    ("stepper metrics --port 9808", "metrics"),
    ("stepper alerts watch", "alerts watch"),
    ("stepper alerts check", "alerts check"),
    ("stepper dlq list --kind chat --json", "dlq list"),
    ("stepper dlq show 1700000000000-0", "dlq show"),
    ("stepper dlq replay 1700000000000-0", "dlq replay"),
    ("stepper dlq replay --all --kind chat", "dlq replay"),
    ("stepper dlq purge --yes", "dlq purge"),
    ("stepper flower", "flower"),
    ("stepper flower --address=127.0.0.1 --port=5555", "flower"),
    ("stepper flower --address 0.0.0.0 --port 5555", "flower"),
    ("stepper demo --timeout 60", "demo"),
    ("stepper demo --timeout 120 --guide-out .run/guide", "demo"),
    ("stepper workflow run howto recording.webm --out guide/", "workflow run"),
    ("stepper workflow status 3b0c7f0e-5d6a-4f1e-9c2b-1a2b3c4d5e6f", "workflow status"),
    ("stepper workflow resume 3b0c7f0e-5d6a-4f1e-9c2b-1a2b3c4d5e6f --out guide/", "workflow resume"),
    ("stepper workflow cancel 3b0c7f0e-5d6a-4f1e-9c2b-1a2b3c4d5e6f", "workflow cancel"),
]


@pytest.fixture
def invoked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every command's callback replaced by a recorder: main() parses for real and runs nothing."""
    calls: list[str] = []

    def replace(command: click.Command, path: str) -> None:
        def record(**_params: Any) -> int:
            calls.append(path)
            return 0

        monkeypatch.setattr(command, "callback", record)
        for name, subcommand in getattr(command, "commands", {}).items():
            replace(subcommand, f"{path} {name}".strip())

    replace(root_command, "")
    return calls


@pytest.mark.parametrize(("line", "command"), DOCUMENTED)
def test_documented_invocations_still_parse(
    line: str, command: str, invoked: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jobs.jsonl").touch()
    (tmp_path / "results.jsonl").touch()
    (tmp_path / "recording.webm").touch()

    assert main(shlex.split(line)[1:]) == 0

    assert invoked[-1] == command


LOADED_BY_HELP = """
import contextlib, io, json, sys
from stepper.cli import main, stepper
command = stepper.commands[sys.argv[1]]
paths = [[sys.argv[1]], *([sys.argv[1], name] for name in getattr(command, "commands", {}))]
with contextlib.redirect_stdout(io.StringIO()):
    statuses = [main([*path, "--help"]) for path in paths]
print(json.dumps({"statuses": statuses, "celery": "celery" in sys.modules}))
"""


@pytest.mark.parametrize("command", COMMANDS)
def test_help_does_not_load_celery(command: str) -> None:
    """In a fresh interpreter: this one has long imported Celery. A group's subcommands are asked too."""
    done = subprocess.run(
        [sys.executable, "-c", LOADED_BY_HELP, command], capture_output=True, text=True, timeout=60, check=True
    )

    answer = json.loads(done.stdout)
    assert set(answer["statuses"]) == {0}
    assert answer["celery"] is False


def test_a_worker_can_run_its_profile_on_another_pool_and_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[list[str]] = []
    monkeypatch.setattr("os.execv", lambda path, argv: started.append(argv))

    assert main(["worker", "--profile", "llm", "--pool", "gevent", "--concurrency", "1000"]) == 0

    argv = started[0]
    assert argv[argv.index("--pool") + 1] == "gevent"
    assert argv[argv.index("--concurrency") + 1] == "1000"
    assert argv[argv.index("--queues") + 1] == "report,chat"


def test_a_worker_concurrency_out_of_range_is_refused_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--profile", "llm", "--concurrency", "0"]) == 2
    assert "--concurrency" in capsys.readouterr().err
