"""The ``stepper`` command: inspect providers, submit work, run the fleet and watch it.

One module per command group. A command imports what it runs inside its body, so ``stepper --help`` starts
fast and never loads Celery.
"""

from __future__ import annotations

import click

from stepper.cli.batch import batch_group
from stepper.cli.common import INTERRUPTED, fail
from stepper.cli.demo import demo_command
from stepper.cli.dlq import dlq_group
from stepper.cli.gateway import gateway_group
from stepper.cli.ops import alerts_group, flower_command, health_command, metrics_command, status_command
from stepper.cli.work import (
    cancel_command,
    fleet_command,
    providers_command,
    submit_command,
    voices_command,
    worker_command,
)
from stepper.cli.workflow import workflow_group
from stepper.errors import StepperError

__all__ = ["main", "stepper"]

stepper = click.Group(
    "stepper",
    help="A Celery worker fleet for AI inference.",
    commands=[
        providers_command,
        submit_command,
        cancel_command,
        voices_command,
        worker_command,
        fleet_command,
        status_command,
        health_command,
        metrics_command,
        flower_command,
        alerts_group,
        dlq_group,
        batch_group,
        gateway_group,
        workflow_group,
        demo_command,
    ],
    context_settings={"help_option_names": ["-h", "--help"]},
)


def main(argv: list[str] | None = None) -> int:
    """Run ``stepper`` on ``argv`` (``sys.argv[1:]`` by default); the exit status, returned rather than raised.

    A usage error prints click's message on stderr and returns 2, as does a ``StepperError`` (``stepper: Type:
    message``); Ctrl-C returns 130. Otherwise the status is the command's own.
    """
    try:
        status: int = stepper.main(argv, prog_name="stepper", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:  # click's form of KeyboardInterrupt
        return INTERRUPTED
    except StepperError as exc:
        return fail(f"{type(exc).__name__}: {exc}")
    return status
