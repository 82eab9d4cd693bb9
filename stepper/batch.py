"""Batches: submit a JSONL file of jobs through ``stepper.submit`` with a bounded window, resumably.

A job is one line ``{"id", "kind", "args", "priority"?}``. Every line is validated before anything is sent.
Each outcome is appended to a results file as soon as it is known, ``{"id", "status": "SUCCESS", "result"}``
or ``{"id", "status": "FAILURE", "error": {"type", "message"}}``, so an interrupted run loses nothing already
finished and a rerun with the same results file submits only the jobs it does not list yet.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stepper.errors import InvalidRequest
from stepper.families import FAMILIES
from stepper.priorities import PriorityName
from stepper.schemas import Kind, describe_validation_error

__all__ = [
    "Job",
    "LineError",
    "PendingResult",
    "Progress",
    "Summary",
    "load_jobs",
    "read_done_ids",
    "scan_jobs",
    "submit_many",
    "summarise_results",
]

#: How often a running batch reports progress, at least.
PROGRESS_INTERVAL_S = 1.0
#: While submitting, an early-finisher poll waits at least this many times as long as the previous one took:
#: polling then takes at most a tenth of the time, however wide the window.
EARLY_POLL_SPACING = 9.0


class Job(BaseModel):
    """One line of a jobs file. Batches run at ``batch`` priority unless a line says otherwise."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1)]
    kind: Kind
    args: dict[str, Any]
    priority: PriorityName | Annotated[int, Field(ge=0, le=9)] = "batch"


@dataclass(frozen=True)
class LineError:
    """A line of a jobs file that cannot be sent: its 1-based number and what is wrong with it."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class Progress:
    """Where a running batch stands; ``done`` counts finished jobs, failures included."""

    submitted: int
    done: int
    failed: int
    elapsed_s: float
    rate_per_s: float
    #: Seconds left at the current rate, when the number of jobs is known and something has finished.
    eta_s: float | None


@dataclass
class Summary:
    """The outcome of one run of ``submit_many``."""

    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    #: Jobs already in the results file, not submitted again.
    skipped: int = 0
    #: Jobs ``submit`` refused (skipped because ``skip_invalid``); nothing was written for them.
    invalid: list[str] = field(default_factory=list)
    #: Why submitting stopped early: a job ``submit`` refused, without ``skip_invalid``.
    refused: str | None = None
    #: Submitted but not finished when the run was interrupted: not in the results file, a rerun sends them again.
    unfinished: int = 0
    interrupted: bool = False
    elapsed_s: float = 0.0


class PendingResult(Protocol):
    """What ``submit_many`` needs of a submitted task: Celery's ``AsyncResult`` and ``EagerResult`` fit."""

    @property
    def id(self) -> str: ...

    @property
    def result(self) -> Any: ...

    def ready(self) -> bool: ...

    def successful(self) -> bool: ...


Submit = Callable[..., PendingResult]


def scan_jobs(path: Path) -> Iterator[Job | LineError]:
    """Each non-blank line of ``path``, parsed and validated (shape, unique id, the kind's arguments), in order.

    A file can be scanned twice (once to check it, once to send it) without holding its jobs in memory.
    """
    first_seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if text.strip():
                yield _parse_line(number, text, first_seen)


def load_jobs(path: Path) -> tuple[list[Job], list[LineError]]:
    """The valid jobs of ``path`` and the errors of the others, each naming its line."""
    jobs: list[Job] = []
    errors: list[LineError] = []
    for item in scan_jobs(path):
        if isinstance(item, LineError):
            errors.append(item)
        else:
            jobs.append(item)
    return jobs, errors


def _parse_line(number: int, text: str, first_seen: dict[str, int]) -> Job | LineError:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        return LineError(number, f"not valid JSON: {exc.msg} (column {exc.colno})")
    if not isinstance(raw, dict):
        return LineError(number, 'expected a JSON object {"id", "kind", "args", "priority"?}')
    try:
        job = Job.model_validate(raw)
    except ValidationError as exc:
        return LineError(number, describe_validation_error(exc))
    if job.id in first_seen:
        return LineError(number, f"duplicate id {job.id!r} (first on line {first_seen[job.id]})")
    first_seen[job.id] = number
    try:
        FAMILIES[job.kind].parse(job.args)
    except InvalidRequest as exc:
        return LineError(number, f"job {job.id!r}: {exc}")
    return job


def read_done_ids(out: Path) -> set[str]:
    """The ids a results file already holds; a line cut short by a crash is ignored (its job runs again)."""
    return {record["id"] for record in _read_results(out) if isinstance(record.get("id"), str)}


def _read_results(out: Path) -> Iterator[dict[str, Any]]:
    if not out.exists():
        return
    with out.open(encoding="utf-8") as lines:
        for text in lines:
            try:
                record = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record


def summarise_results(out: Path) -> tuple[Counter[str], Counter[str]]:
    """Counts by status, and the failures' counts by error type, of a results file."""
    statuses: Counter[str] = Counter()
    error_types: Counter[str] = Counter()
    for record in _read_results(out):
        statuses[str(record.get("status"))] += 1
        if record.get("status") == "FAILURE":
            error = record.get("error")
            error_types[str(error.get("type") if isinstance(error, dict) else "unknown")] += 1
    return statuses, error_types


@dataclass
class _InFlight:
    job: Job
    result: PendingResult
    submitted_at: float


class _Run:
    """The state of one ``submit_many`` call: the window of tasks in flight and the results file."""

    def __init__(
        self,
        sink: IO[str],
        *,
        timeout_s: float,
        total: int | None,
        progress: Callable[[Progress], None] | None,
        clock: Callable[[], float],
    ) -> None:
        self.sink, self.timeout_s, self.total, self.progress, self.clock = sink, timeout_s, total, progress, clock
        self.summary = Summary()
        self.in_flight: dict[str, _InFlight] = {}
        self.started = clock()
        self.last_report = self.started
        #: How long the previous poll took: a poll asks about every task in flight (:func:`ready_ids`).
        self.last_poll_s = 0.0

    def add(self, job: Job, result: PendingResult) -> None:
        """Count a submitted job as in flight. Not asked whether it is ready: for a task just sent that is a
        result-backend round trip per message, nearly always answered no. A cached answer (EagerResult) is
        recorded by the next poll, at once and without a round trip."""
        self.summary.submitted += 1
        self.in_flight[job.id] = _InFlight(job, result, self.clock())

    def poll(self) -> int:
        """Record every task in flight that finished or timed out; return how many."""
        now = self.clock()
        try:
            return self._poll(now)
        finally:
            self.last_poll_s = self.clock() - now

    def _poll(self, now: float) -> int:
        finished = 0
        ready = ready_ids([entry.result for entry in self.in_flight.values()])
        for job_id, entry in list(self.in_flight.items()):
            if entry.result.id in ready:
                self._record(entry.job, entry.result)
            elif now - entry.submitted_at > self.timeout_s:
                message = f"no result within {self.timeout_s:g}s (task {entry.result.id} may still finish)"
                self._write(entry.job.id, "FAILURE", error={"type": "Timeout", "message": message})
            else:
                continue
            del self.in_flight[job_id]
            finished += 1
        return finished

    def _record(self, job: Job, result: PendingResult) -> None:
        if result.successful():
            self._write(job.id, "SUCCESS", result=result.result)
        else:
            error = result.result  # Celery rebuilds the task's exception from the result backend
            self._write(job.id, "FAILURE", error={"type": type(error).__name__, "message": str(error)})

    def _write(self, job_id: str, status: str, **outcome: Any) -> None:
        self.sink.write(json.dumps({"id": job_id, "status": status, **outcome}) + "\n")
        self.sink.flush()
        if status == "SUCCESS":
            self.summary.succeeded += 1
        else:
            self.summary.failed += 1

    def report(self, *, force: bool = False) -> None:
        now = self.clock()
        if self.progress is None or (not force and now - self.last_report < PROGRESS_INTERVAL_S):
            return
        self.last_report = now
        elapsed_s = now - self.started
        done = self.summary.succeeded + self.summary.failed
        rate = done / elapsed_s if elapsed_s > 0 else 0.0
        eta_s = None
        if self.total is not None and rate > 0:
            eta_s = max(0, self.total - self.summary.skipped - done) / rate
        self.progress(Progress(self.summary.submitted, done, self.summary.failed, elapsed_s, rate, eta_s))

    def finish(self) -> Summary:
        self.summary.unfinished = len(self.in_flight)
        self.summary.elapsed_s = self.clock() - self.started
        self.report(force=True)
        return self.summary


def ready_ids(results: Iterable[PendingResult]) -> set[str]:
    """The ids of ``results`` that are ready. The tasks of a result backend that stores results by key (Celery's
    Redis backend, and the other key-value ones: ``supports_native_join``) are asked about together, in one
    ``MGET`` (its ``get_many``, once, as ``ResultSet.join_native`` asks); any other result is asked alone (a
    cached answer, an ``EagerResult``, without a round trip)."""
    ready: set[str] = set()
    together: dict[int, tuple[Any, list[str]]] = {}
    for result in results:
        backend = getattr(result, "backend", None)
        if backend is not None and getattr(backend, "supports_native_join", False):
            together.setdefault(id(backend), (backend, []))[1].append(result.id)
        elif result.ready():
            ready.add(result.id)
    for backend, task_ids in together.values():
        ready.update(task_id for task_id, _meta in backend.get_many(task_ids, interval=0, max_iterations=1))
    return ready


def submit_many(
    jobs: Iterable[Job],
    out: Path,
    *,
    window: int = 200,
    skip_invalid: bool = False,
    timeout_s: float = 600.0,
    progress: Callable[[Progress], None] | None = None,
    submit: Submit | None = None,
    total: int | None = None,
    poll_interval_s: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Summary:
    """Submit ``jobs`` not yet in ``out``, never more than ``window`` unfinished at once, appending each outcome.

    ``timeout_s`` bounds each job from its submission; one that takes longer is written as a ``Timeout``
    failure. When ``submit`` refuses a job (``InvalidRequest``: something only the producer checks, such as a
    callback URL), submitting stops there (``refused``; what is in flight is still recorded) unless
    ``skip_invalid``, which skips the job and lists it in ``invalid``; nothing is written for it. Ctrl-C
    stops submitting and returns with ``interrupted``; what was written stays, and a rerun continues.
    ``total`` (the number of jobs, when ``jobs`` has no length) lets progress show an ETA.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    if submit is None:
        from stepper.producer import submit as submit_one

        submit = submit_one
    if total is None and isinstance(jobs, list | tuple):
        total = len(jobs)
    done_ids = read_done_ids(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as sink:
        if out.stat().st_size and not out.read_bytes().endswith(b"\n"):
            sink.write("\n")  # a line cut short by a crash stays on its own line
        run = _Run(sink, timeout_s=timeout_s, total=total, progress=progress, clock=clock)
        try:
            _submit_all(
                jobs,
                run,
                done_ids=done_ids,
                window=window,
                skip_invalid=skip_invalid,
                submit=submit,
                poll_interval_s=poll_interval_s,
                sleep=sleep,
            )
            while run.in_flight:
                if not run.poll():
                    sleep(poll_interval_s)
                run.report()
        except KeyboardInterrupt:
            run.summary.interrupted = True
        return run.finish()


def _submit_all(
    jobs: Iterable[Job],
    run: _Run,
    *,
    done_ids: set[str],
    window: int,
    skip_invalid: bool,
    submit: Submit,
    poll_interval_s: float,
    sleep: Callable[[float], None],
) -> None:
    last_poll = run.clock()
    for job in jobs:
        if job.id in done_ids:
            run.summary.skipped += 1
            continue
        while len(run.in_flight) >= window:
            if not run.poll():
                sleep(poll_interval_s)
            run.report()
        try:
            result = submit(job.kind, job.args, priority=job.priority, correlation_id=job.id)
        except InvalidRequest as exc:
            if not skip_invalid:
                run.summary.refused = f"job {job.id!r}: {exc}"
                return
            run.summary.invalid.append(f"job {job.id!r}: {exc}")
            continue
        run.add(job, result)
        # Record early finishers while the window fills, spaced by the cost of the last poll: at a fixed
        # interval a wide window would make submitting quadratic (every poll asks about every task sent).
        if run.clock() - last_poll >= max(poll_interval_s, EARLY_POLL_SPACING * run.last_poll_s):
            run.poll()
            last_poll = run.clock()
        run.report()
