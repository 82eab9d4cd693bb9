"""What the command groups share: the ``--json`` flag, JSON on stdout, and how a command stops with a reason."""

from __future__ import annotations

import json
from typing import Any

import click

#: Exit status of a command stopped by Ctrl-C: what a shell reports for a process killed by SIGINT.
INTERRUPTED = 130

json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


def echo_json(value: Any, indent: int | None = 2) -> None:
    """Print ``value`` as JSON on stdout, indented unless ``indent`` is None (one line)."""
    click.echo(json.dumps(value, indent=indent))


def fail(message: str, status: int = 2) -> int:
    """Say on stderr why the command stops, as ``stepper: message``; return ``status`` for the command to return."""
    click.echo(f"stepper: {message}", err=True)
    return status
