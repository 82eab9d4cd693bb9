"""``stepper batch``: submit a JSONL file of jobs with a bounded window, resumably, and summarise results."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from stepper.cli.common import INTERRUPTED, fail

if TYPE_CHECKING:
    from stepper.batch import Progress, Summary

#: Seconds between progress lines when the output is not a terminal (a log file, CI).
PLAIN_PROGRESS_INTERVAL_S = 5.0


@click.group("batch")
def batch_group() -> None:
    """submit a JSONL file of jobs, resumably; summarise its results"""


@batch_group.command("submit")
@click.argument("jobs", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="results JSONL: appended to, and read to resume"
)
@click.option("--window", type=click.IntRange(min=1), default=200, help="most tasks in flight at once (200)")
@click.option("--skip-invalid", is_flag=True, help="report invalid lines and send the others")
@click.option("--timeout", "timeout_s", type=float, default=600.0, help="seconds a job may take once sent (600)")
def submit_command(jobs: Path, out: Path, window: int, skip_invalid: bool, timeout_s: float) -> int:
    """send a JSONL file of jobs {"id", "kind", "args", "priority"?}

    JOBS holds the jobs, one JSON object a line.
    """
    from stepper.batch import LineError, read_done_ids, scan_jobs, submit_many

    done_before = read_done_ids(out)
    errors: list[LineError] = []
    valid = to_send = 0
    for item in scan_jobs(jobs):  # the whole file is checked before anything is sent
        if isinstance(item, LineError):
            errors.append(item)
        else:
            valid += 1
            if item.id not in done_before:
                to_send += 1
    for error in errors:
        click.echo(error, err=True)
    if errors and not skip_invalid:
        return fail(f"nothing sent: {len(errors)} invalid line(s); fix them or pass --skip-invalid")
    if errors:
        click.echo(f"skipping {len(errors)} invalid line(s)", err=True)
    with _progress_display(to_send) as show_progress:
        summary = submit_many(
            (item for item in scan_jobs(jobs) if not isinstance(item, LineError)),
            out,
            window=window,
            skip_invalid=skip_invalid,
            timeout_s=timeout_s,
            progress=show_progress,
            total=valid,
        )
    return _report(summary, jobs, out)


def _report(summary: Summary, jobs: Path, out: Path) -> int:
    for invalid in summary.invalid:
        click.echo(f"skipped, refused by submit: {invalid}", err=True)
    click.echo(
        f"submitted {summary.submitted}, succeeded {summary.succeeded}, failed {summary.failed}, "
        f"already done {summary.skipped} in {summary.elapsed_s:.1f}s; results in {out}"
    )
    if summary.refused is not None:
        return fail(f"stopped submitting: {summary.refused}; fix it or pass --skip-invalid")
    if summary.interrupted:
        command = ["stepper", "batch", "submit", str(jobs), "--out", str(out)]
        click.echo(
            f"interrupted: what finished is in {out}; {summary.unfinished} task(s) in flight were not recorded "
            f"and will be sent again. Resume with: {shlex.join(command)}",
            err=True,
        )
        return INTERRUPTED
    return 1 if summary.failed else 0


@contextmanager
def _progress_display(to_send: int) -> Iterator[Callable[[Progress], None]]:
    """Click's progress bar over the jobs to send, on a terminal; a plain line every few seconds otherwise."""
    if not sys.stderr.isatty():
        yield _PlainProgress()
        return
    with click.progressbar(length=to_send, file=sys.stderr, show_eta=False, item_show_func=_progress_line) as bar:
        yield lambda progress: bar.update(progress.done - bar.pos, progress)


class _PlainProgress:
    """For a log file or CI, where a line redrawn in place would be noise."""

    def __init__(self) -> None:
        self.last_line_at = 0.0

    def __call__(self, progress: Progress) -> None:
        if time.monotonic() - self.last_line_at >= PLAIN_PROGRESS_INTERVAL_S:
            click.echo(_progress_line(progress), err=True)
            self.last_line_at = time.monotonic()


def _progress_line(progress: Progress | None) -> str | None:
    if progress is None:
        return None
    eta = "?" if progress.eta_s is None else _duration(progress.eta_s)
    return (
        f"submitted {progress.submitted}  done {progress.done}  failed {progress.failed}  "
        f"{progress.rate_per_s:.1f}/s  ETA {eta}"
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@batch_group.command("status")
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def status_command(results: Path) -> int:
    """counts by status and the failures' error types of a results file"""
    from stepper.batch import summarise_results

    statuses, error_types = summarise_results(results)
    click.echo(f"{results}: {sum(statuses.values())} job(s)")
    for status, count in statuses.most_common():
        click.echo(f"  {status:<8} {count}")
    if error_types:
        click.echo("failures by error type:")
        for error_type, count in error_types.most_common():
            click.echo(f"  {error_type:<16} {count}")
    return 0
