"""Batches: validation with line numbers, resuming from a results file, the window of tasks in flight."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import states
from celery.result import AsyncResult, EagerResult

import stepper.producer
from stepper.batch import Job, LineError, Progress, load_jobs, ready_ids, submit_many
from stepper.celery import create_app
from stepper.cli import main
from stepper.config import load_config
from stepper.errors import ChainExhausted, InvalidRequest
from tests.support.redis_server import RedisServer
from tests.unit.guards.harness import count_commands

MESSAGES = [{"role": "user", "content": "hello"}]
FAILED = "every provider in the chain failed"


def job_line(job_id: str, **extra: Any) -> str:
    return json.dumps({"id": job_id, "kind": "chat", "args": {"messages": MESSAGES}, **extra})


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def read_results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class FakeResult:
    id: str
    finished: bool = False
    value: Any = None
    error: BaseException | None = None

    @property
    def result(self) -> Any:
        return self.error if self.error is not None else self.value

    def ready(self) -> bool:
        return self.finished

    def successful(self) -> bool:
        return self.finished and self.error is None


@dataclass
class FakeFleet:
    """A fake ``submit`` whose tasks finish only when ``finish_oldest`` (the fake ``sleep``) says so."""

    results: list[FakeResult] = field(default_factory=list)
    submitted: list[tuple[str, dict[str, Any], Any, Any]] = field(default_factory=list)
    cached: bool = False
    refuse: set[str] = field(default_factory=set)
    fail: set[str] = field(default_factory=set)
    most_unfinished: int = 0

    def submit(self, kind: str, args: dict[str, Any], *, priority: Any, correlation_id: Any) -> FakeResult:
        if correlation_id in self.refuse:
            raise InvalidRequest("callback_url: not on the allow-list")
        self.submitted.append((kind, args, priority, correlation_id))
        result = FakeResult(f"task-{correlation_id}", finished=self.cached, value={"answer": correlation_id})
        if self.cached and correlation_id in self.fail:
            result.error = ChainExhausted(FAILED)
        self.results.append(result)
        self.most_unfinished = max(self.most_unfinished, self.unfinished())
        return result

    def unfinished(self) -> int:
        return sum(not result.finished for result in self.results)

    def finish_oldest(self, _seconds: float) -> None:
        result = next(result for result in self.results if not result.finished)
        job_id = result.id.removeprefix("task-")
        if job_id in self.fail:
            result.error = ChainExhausted(FAILED)
        result.finished = True

    @property
    def ids(self) -> list[str]:
        return [call[3] for call in self.submitted]


def run(fleet: FakeFleet, jobs: list[Job], out: Path, **options: Any) -> Any:
    return submit_many(jobs, out, submit=fleet.submit, sleep=fleet.finish_oldest, **options)


def jobs_of(*ids: str) -> list[Job]:
    return [Job(id=job_id, kind="chat", args={"messages": MESSAGES}) for job_id in ids]


def test_every_invalid_line_is_reported_with_its_number(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "jobs.jsonl",
        job_line("ok"),
        "",
        "{not json",
        json.dumps({"id": "no-kind", "args": {}}),
        job_line("extra", colour="red"),
        json.dumps({"id": "bad-args", "kind": "chat", "args": {"messages": "hi"}}),
        json.dumps({"id": "", "kind": "chat", "args": {"messages": MESSAGES}}),
        "[1, 2]",
        job_line("urgent", priority=12),
        job_line("last", priority="interactive"),
    )
    jobs, errors = load_jobs(path)
    assert [job.id for job in jobs] == ["ok", "last"]
    assert jobs[0].priority == "batch" and jobs[1].priority == "interactive"
    assert [error.line for error in errors] == [3, 4, 5, 6, 7, 8, 9]
    messages = dict((error.line, error.message) for error in errors)
    assert messages[3].startswith("not valid JSON")
    assert "kind" in messages[4]
    assert "colour" in messages[5]
    assert messages[6].startswith("job 'bad-args': invalid chat request") and "messages" in messages[6]
    assert messages[7].startswith("id:")
    assert "JSON object" in messages[8]
    assert "priority" in messages[9]
    assert str(errors[0]) == f"line 3: {messages[3]}"


def test_a_repeated_id_is_invalid_after_its_first_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "jobs.jsonl", job_line("a"), job_line("b"), job_line("a"))
    jobs, errors = load_jobs(path)
    assert [job.id for job in jobs] == ["a", "b"]
    assert errors == [LineError(3, "duplicate id 'a' (first on line 1)")]


def test_outcomes_are_written_as_they_finish(tmp_path: Path) -> None:
    fleet = FakeFleet(fail={"b"})
    out = tmp_path / "results.jsonl"
    summary = run(fleet, jobs_of("a", "b", "c"), out)
    assert read_results(out) == [
        {"id": "a", "status": "SUCCESS", "result": {"answer": "a"}},
        {"id": "b", "status": "FAILURE", "error": {"type": "ChainExhausted", "message": FAILED}},
        {"id": "c", "status": "SUCCESS", "result": {"answer": "c"}},
    ]
    assert (summary.submitted, summary.succeeded, summary.failed, summary.skipped) == (3, 2, 1, 0)
    assert [call[2] for call in fleet.submitted] == ["batch"] * 3


def test_a_rerun_submits_only_the_jobs_the_results_file_lacks(tmp_path: Path) -> None:
    out = write_lines(
        tmp_path / "results.jsonl",
        json.dumps({"id": "a", "status": "SUCCESS", "result": {}}),
        json.dumps({"id": "c", "status": "FAILURE", "error": {"type": "Timeout", "message": "slow"}}),
    )
    with out.open("a", encoding="utf-8") as sink:
        sink.write('{"id": "d", "sta')  # cut short by a crash: d was not recorded
    fleet = FakeFleet()
    summary = run(fleet, jobs_of("a", "b", "c", "d"), out)
    assert fleet.ids == ["b", "d"]
    assert summary.skipped == 2 and summary.submitted == 2
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[2] == '{"id": "d", "sta'  # kept as it was; the new results start on a line of their own
    assert [json.loads(line)["id"] for line in lines[:2] + lines[3:]] == ["a", "c", "b", "d"]


def test_never_more_than_the_window_is_in_flight(tmp_path: Path) -> None:
    fleet = FakeFleet()
    ids = [f"job-{n}" for n in range(50)]
    summary = run(fleet, jobs_of(*ids), tmp_path / "results.jsonl", window=5)
    assert fleet.most_unfinished == 5
    assert fleet.ids == ids and summary.succeeded == 50
    assert len(read_results(tmp_path / "results.jsonl")) == 50


def test_cached_results_count_as_done_at_once(tmp_path: Path) -> None:
    def never_wait(_seconds: float) -> None:
        raise AssertionError("cached results need no waiting")

    fleet = FakeFleet(cached=True)
    summary = submit_many(
        jobs_of("a", "b", "c"), tmp_path / "out.jsonl", window=1, submit=fleet.submit, sleep=never_wait
    )
    assert summary.succeeded == 3


def test_a_job_that_takes_too_long_is_a_timeout_failure(tmp_path: Path) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    fleet = FakeFleet()
    out = tmp_path / "out.jsonl"
    summary = submit_many(
        jobs_of("a"), out, submit=fleet.submit, sleep=sleep, clock=lambda: now[0], timeout_s=2.0, poll_interval_s=0.5
    )
    (record,) = read_results(out)
    assert record["status"] == "FAILURE" and record["error"]["type"] == "Timeout"
    assert summary.failed == 1


def test_progress_is_reported_with_an_eta_and_at_the_end(tmp_path: Path) -> None:
    now = [0.0]
    fleet = FakeFleet()

    def sleep(seconds: float) -> None:
        now[0] += 1.0
        fleet.finish_oldest(seconds)

    reports: list[Progress] = []
    submit_many(
        jobs_of(*(f"j{n}" for n in range(6))),
        tmp_path / "out.jsonl",
        window=2,
        submit=fleet.submit,
        sleep=sleep,
        clock=lambda: now[0],
        progress=reports.append,
    )
    assert reports[-1].done == 6 and reports[-1].submitted == 6 and reports[-1].eta_s == 0
    assert any(report.eta_s is not None and report.eta_s > 0 for report in reports[:-1])


def test_a_job_submit_refuses_stops_the_batch_unless_skipped(tmp_path: Path) -> None:
    fleet = FakeFleet(refuse={"b"})
    stopped = run(fleet, jobs_of("a", "b", "c"), tmp_path / "stopped.jsonl")
    assert stopped.refused is not None and "'b'" in stopped.refused
    assert fleet.ids == ["a"] and [r["id"] for r in read_results(tmp_path / "stopped.jsonl")] == ["a"]

    fleet = FakeFleet(refuse={"b"})
    skipped = run(fleet, jobs_of("a", "b", "c"), tmp_path / "skipped.jsonl", skip_invalid=True)
    assert skipped.refused is None and len(skipped.invalid) == 1 and "callback_url" in skipped.invalid[0]
    assert [r["id"] for r in read_results(tmp_path / "skipped.jsonl")] == ["a", "c"]


def test_the_cli_sends_nothing_when_a_line_is_invalid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = FakeFleet(cached=True)
    monkeypatch.setattr(stepper.producer, "submit", fleet.submit)
    jobs = write_lines(tmp_path / "jobs.jsonl", job_line("a"), "{oops", job_line("b"))
    out = tmp_path / "results.jsonl"

    assert main(["batch", "submit", str(jobs), "--out", str(out)]) == 2
    assert "line 2: not valid JSON" in capsys.readouterr().err
    assert fleet.ids == [] and not out.exists()

    assert main(["batch", "submit", str(jobs), "--out", str(out), "--skip-invalid"]) == 0
    assert "line 2: not valid JSON" in capsys.readouterr().err
    assert fleet.ids == ["a", "b"] and len(read_results(out)) == 2


def test_the_cli_exits_1_when_a_job_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = FakeFleet(cached=True, fail={"b"})
    monkeypatch.setattr(stepper.producer, "submit", fleet.submit)
    jobs = write_lines(tmp_path / "jobs.jsonl", job_line("a"), job_line("b"))
    assert main(["batch", "submit", str(jobs), "--out", str(tmp_path / "out.jsonl")]) == 1
    assert "submitted 2, succeeded 1, failed 1" in capsys.readouterr().out


def test_status_counts_by_status_and_error_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = write_lines(
        tmp_path / "results.jsonl",
        json.dumps({"id": "a", "status": "SUCCESS", "result": {}}),
        json.dumps({"id": "b", "status": "FAILURE", "error": {"type": "ChainExhausted", "message": "x"}}),
        json.dumps({"id": "c", "status": "FAILURE", "error": {"type": "Timeout", "message": "y"}}),
        json.dumps({"id": "d", "status": "FAILURE", "error": {"type": "ChainExhausted", "message": "z"}}),
    )
    assert main(["batch", "status", str(out)]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert lines[0][1:] == ["4", "job(s)"]
    assert ["FAILURE", "3"] in lines and ["SUCCESS", "1"] in lines
    assert ["ChainExhausted", "2"] in lines and ["Timeout", "1"] in lines


def test_early_polls_take_at_most_a_tenth_of_the_time_spent_submitting(tmp_path: Path) -> None:
    """Each poll asks about every task in flight; with a wide window a fixed interval would be quadratic."""
    now = [0.0]
    asked = [0]
    asked_while_submitting: list[int] = []
    jobs = jobs_of(*(f"j{index}" for index in range(1000)))

    class SlowToAsk(FakeResult):
        def ready(self) -> bool:
            asked[0] += 1
            now[0] += 0.001  # one result-backend round trip
            return False

    def submit(kind: str, args: dict[str, Any], *, priority: Any, correlation_id: Any) -> FakeResult:
        now[0] += 0.001  # sending one message
        asked_while_submitting.append(asked[0])
        return SlowToAsk(f"task-{correlation_id}")

    def sleep(seconds: float) -> None:
        now[0] += seconds

    summary = submit_many(
        jobs, tmp_path / "out.jsonl", window=len(jobs), submit=submit, sleep=sleep, clock=lambda: now[0], timeout_s=1
    )
    assert summary.failed == len(jobs)  # nothing ever finished: each timed out after submitting
    submitting_s = len(jobs) * 0.001 + asked_while_submitting[-1] * 0.001
    assert asked_while_submitting[-1] * 0.001 <= 0.12 * submitting_s
    assert asked_while_submitting[-1] > 0  # early finishers are still looked for


def test_a_poll_asks_the_redis_backend_about_every_task_in_one_round_trip(
    redis_server: RedisServer, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Celery's Redis backend answers for all the tasks in flight with one MGET, not a GET per task; a cached
    answer (EagerResult) is ready without asking."""
    app = create_app(load_config({"STEPPER_REDIS_URL": redis_server.url, "CELERY_CONFIG_MODULE": "absent_config"}))
    done, failed, pending = (AsyncResult(f"task-{name}", app=app) for name in ("done", "failed", "pending"))
    app.backend.store_result(done.id, {"answer": 42}, states.SUCCESS)
    app.backend.store_result(failed.id, ValueError("no"), states.FAILURE)
    cached = EagerResult("cached", {"answer": 1}, states.SUCCESS)
    sent = count_commands(app.backend.client, monkeypatch)
    assert ready_ids([done, failed, pending, cached]) == {done.id, failed.id, cached.id}
    assert sent == ["MGET"]
