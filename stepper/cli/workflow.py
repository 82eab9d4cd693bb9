"""``stepper workflow``: run a how-to workflow with a progress bar per stage, read its status, resume, cancel."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from stepper.cli.common import echo_json, fail, json_option
from stepper.priorities import PRIORITIES, priority_from_text

if TYPE_CHECKING:
    from stepper.workflows.api import WorkflowHandle
    from stepper.workflows.schemas import WorkflowStatus

#: How often the progress bars read the status (seconds).
POLL_S = 0.25
STAGE_LABELS = {"steps": "steps   ", "write": "write   ", "narrate": "narrate ", "assemble": "assemble"}


@click.group("workflow")
def workflow_group() -> None:
    """multi-stage jobs: a narrated how-to guide from a screen recording"""


@workflow_group.command("run")
@click.argument("name", type=click.Choice(["howto"]))
@click.argument("recording", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), help="write the guide's files here")
@click.option("--language", default="English", show_default=True, help="the guide's language")
@click.option("--audience", default=None, help="who reads it, e.g. 'new employees'")
@click.option("--voice", default=None, help="the narration's voice (see `stepper voices`)")
@click.option("--priority", default="normal", help=f"{', '.join(PRIORITIES)} or 0-9 (0 most urgent)")
@click.option("--timeout", "timeout_s", type=float, default=600.0, help="seconds to wait for the guide")
def run_command(  # noqa: PLR0917  (click passes each option)
    name: str,
    recording: Path,
    out: Path | None,
    language: str,
    audience: str | None,
    voice: str | None,
    priority: str,
    timeout_s: float,
) -> int:
    """start NAME on RECORDING (a video file, or a directory of screenshots in name order) and wait for it"""
    from stepper.workflows.api import workflow

    request: dict[str, object] = {"language": language}
    request |= {"audience": audience} if audience else {}
    request |= {"voice": voice} if voice else {}
    if recording.is_dir():
        shots = sorted(path for path in recording.iterdir() if path.suffix.lower() in {".png", ".jpg", ".jpeg"})
        request["frames"] = [{"b64": _b64(path)} for path in shots]
    else:
        request["video"] = {"b64": _b64(recording)}
    handle = workflow(name, request, priority=priority_from_text(priority))
    click.echo(f"workflow {handle.id} started")
    return _follow(handle, out, timeout_s)


@workflow_group.command("status")
@click.argument("workflow_id")
@json_option
def status_command(workflow_id: str, as_json: bool) -> int:
    """a workflow's state, stage, and each piece: done, running, failed (and why) or pending"""
    from stepper.workflows.api import workflow_status

    status = workflow_status(workflow_id)
    if as_json:
        echo_json(status.model_dump(mode="json", exclude={"result"}))
        return 0
    click.echo(f"workflow {status.id} ({status.workflow}): {status.state}, stage {status.stage}")
    for stage, progress in status.progress.items():
        click.echo(f"  {STAGE_LABELS[stage]} {progress.done}/{progress.total}")
    for piece, state in status.pieces.items():
        if state.state != "done":
            click.echo(f"  {piece}: {state.state}" + (f" ({state.error})" if state.error else ""))
    if status.state == "WAITING":
        click.echo(f"resume it with: stepper workflow resume {status.id}")
    if status.result is not None:
        click.echo(f"guide: {status.result.title} ({len(status.result.steps)} steps), HTML at {status.result.html}")
    return 0


@workflow_group.command("resume")
@click.argument("workflow_id")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), help="write the guide's files here")
@click.option("--no-wait", is_flag=True, help="return once the missing pieces are sent")
@click.option("--timeout", "timeout_s", type=float, default=600.0, help="seconds to wait for the guide")
def resume_command(workflow_id: str, out: Path | None, no_wait: bool, timeout_s: float) -> int:
    """run only what a workflow misses (its failed pieces); what is done is never computed again"""
    from stepper.workflows.api import resume_workflow

    handle = resume_workflow(workflow_id)
    click.echo(f"workflow {handle.id} resumed")
    return 0 if no_wait else _follow(handle, out, timeout_s)


@workflow_group.command("cancel")
@click.argument("workflow_id")
def cancel_command(workflow_id: str) -> int:
    """cancel a workflow: its queued pieces never run, its running ones stop"""
    from stepper.workflows.api import cancel_workflow

    cancel_workflow(workflow_id)
    click.echo(f"workflow {workflow_id} cancelled")
    return 0


def _follow(handle: WorkflowHandle, out: Path | None, timeout_s: float) -> int:
    """One progress bar per stage, in order, until the workflow stops; then the guide's files, if asked."""
    from stepper.workflows.schemas import STAGES

    deadline = time.monotonic() + timeout_s
    status = handle.status()
    for stage in STAGES:
        total = status.progress[stage].total
        with click.progressbar(length=total, label=STAGE_LABELS[stage], show_pos=True) as bar:
            shown = 0
            while True:
                progress = status.progress[stage]
                if progress.total != total:  # the steps are known now: later stages get their real size
                    bar.length = total = progress.total
                bar.update(progress.done - shown)
                shown = progress.done
                if progress.done >= progress.total or status.state != "RUNNING" or time.monotonic() > deadline:
                    break
                time.sleep(POLL_S)
                status = handle.status()
        if status.state != "RUNNING" and status.progress[stage].done < status.progress[stage].total:
            break
    return _outcome(status, out)


def _outcome(status: WorkflowStatus, out: Path | None) -> int:
    """Print where the guide is (writing its files to ``out`` first); otherwise why there is none."""
    from stepper.workflows.export import write_guide

    if status.state == "SUCCESS" and status.result is not None:
        guide = status.result
        click.echo(f"guide: {guide.title} ({len(guide.steps)} steps)")
        if out is not None:
            click.echo(f"HTML guide: {write_guide(guide, out)}")
        else:
            click.echo(f"HTML guide: {guide.html}")
        return 0
    if status.state == "WAITING":
        return fail(
            f"workflow {status.id} stopped: {status.error}; fix it, then: stepper workflow resume {status.id}", 1
        )
    if status.state == "CANCELLED":
        return fail(f"workflow {status.id} was cancelled", 1)
    return fail(
        f"workflow {status.id} is not done yet (stage {status.stage}); see: stepper workflow status {status.id}", 1
    )


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()
