"""``stepper batch``: submit a JSONL file of jobs with a bounded window, resumably, and summarise results."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from stepper.batch import Progress, Summary

#: Seconds between progress lines when the output is not a terminal (a log file, CI).
PLAIN_PROGRESS_INTERVAL_S = 5.0


def add_batch_parser(commands: Any) -> None:
    """Add ``stepper batch`` and its actions to the ``stepper`` command's subparsers."""
    batch = commands.add_parser("batch", help="submit a JSONL file of jobs, resumably; summarise its results")
    actions = batch.add_subparsers(dest="action", required=True)

    submit = actions.add_parser("submit", help='send every line {"id", "kind", "args", "priority"?} of a JSONL file')
    submit.add_argument("jobs", type=Path, help="the jobs, one JSON object a line")
    submit.add_argument("--out", type=Path, required=True, help="results JSONL: appended to, and read to resume")
    submit.add_argument("--window", type=_positive_int, default=200, help="most tasks in flight at once (200)")
    submit.add_argument("--skip-invalid", action="store_true", help="report invalid lines and send the others")
    submit.add_argument("--timeout", type=float, default=600.0, help="seconds a job may take once sent (600)")
    submit.set_defaults(run=_submit_command)

    status = actions.add_parser("status", help="counts by status and the failures' error types of a results file")
    status.add_argument("results", type=Path)
    status.set_defaults(run=lambda args: _status(args.results))


def _submit_command(args: argparse.Namespace) -> int:
    from stepper.batch import LineError, scan_jobs, submit_many

    path: Path = args.jobs
    if not path.is_file():
        print(f"stepper: no jobs file at {path}", file=sys.stderr)
        return 2
    errors: list[LineError] = []
    valid = 0
    for item in scan_jobs(path):  # the whole file is checked before anything is sent
        if isinstance(item, LineError):
            errors.append(item)
        else:
            valid += 1
    for error in errors:
        print(error, file=sys.stderr)
    if errors and not args.skip_invalid:
        print(f"stepper: nothing sent: {len(errors)} invalid line(s); fix them or pass --skip-invalid", file=sys.stderr)
        return 2
    if errors:
        print(f"skipping {len(errors)} invalid line(s)", file=sys.stderr)
    display = _ProgressDisplay(sys.stderr)
    summary = submit_many(
        (item for item in scan_jobs(path) if not isinstance(item, LineError)),
        args.out,
        window=args.window,
        skip_invalid=args.skip_invalid,
        timeout_s=args.timeout,
        progress=display,
        total=valid,
    )
    display.close()
    return _report(summary, args)


def _report(summary: Summary, args: argparse.Namespace) -> int:
    for invalid in summary.invalid:
        print(f"skipped, refused by submit: {invalid}", file=sys.stderr)
    print(
        f"submitted {summary.submitted}, succeeded {summary.succeeded}, failed {summary.failed}, "
        f"already done {summary.skipped} in {summary.elapsed_s:.1f}s; results in {args.out}"
    )
    if summary.refused is not None:
        print(f"stepper: stopped submitting: {summary.refused}; fix it or pass --skip-invalid", file=sys.stderr)
        return 2
    if summary.interrupted:
        command = ["stepper", "batch", "submit", str(args.jobs), "--out", str(args.out)]
        print(
            f"interrupted: what finished is in {args.out}; {summary.unfinished} task(s) in flight were not recorded "
            f"and will be sent again. Resume with: {shlex.join(command)}",
            file=sys.stderr,
        )
        return 130
    return 1 if summary.failed else 0


class _ProgressDisplay:
    """One line refreshed in place on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.in_place = stream.isatty()
        self.last_line_at = 0.0
        self.width = 0

    def __call__(self, progress: Progress) -> None:
        eta = "?" if progress.eta_s is None else _duration(progress.eta_s)
        line = (
            f"submitted {progress.submitted}  done {progress.done}  failed {progress.failed}  "
            f"{progress.rate_per_s:.1f}/s  ETA {eta}"
        )
        if self.in_place:
            self.stream.write("\r" + line.ljust(self.width))
            self.width = len(line)
        elif time.monotonic() - self.last_line_at >= PLAIN_PROGRESS_INTERVAL_S:
            self.stream.write(line + "\n")
            self.last_line_at = time.monotonic()
        self.stream.flush()

    def close(self) -> None:
        if self.in_place and self.width:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _status(results: Path) -> int:
    from stepper.batch import summarise_results

    if not results.is_file():
        print(f"stepper: no results file at {results}", file=sys.stderr)
        return 2
    statuses, error_types = summarise_results(results)
    print(f"{results}: {sum(statuses.values())} job(s)")
    for status, count in statuses.most_common():
        print(f"  {status:<8} {count}")
    if error_types:
        print("failures by error type:")
        for error_type, count in error_types.most_common():
            print(f"  {error_type:<16} {count}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
