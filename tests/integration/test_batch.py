"""``stepper batch submit`` through a real worker: every valid line answered once, a rerun sends nothing."""

from __future__ import annotations

import json
from pathlib import Path

from stepper.cli import main
from tests.integration.conftest import Fleet
from tests.support.providers import calls


def test_a_batch_runs_each_job_once_and_resumes_without_resending(counting_fleet: Fleet, tmp_path: Path) -> None:
    lines = [
        json.dumps(
            {
                "id": f"job-{n}",
                "kind": "chat",
                "args": {"messages": [{"role": "user", "content": f"batch question {n}"}], "cache": "bypass"},
            }
        )
        for n in range(30)
    ]
    lines.insert(7, json.dumps({"id": "broken", "kind": "chat", "args": {"messages": []}, "colour": "red"}))
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "results.jsonl"
    command = ["batch", "submit", str(jobs), "--out", str(out), "--skip-invalid", "--window", "8", "--timeout", "60"]
    before = calls(counting_fleet.redis, "counting")

    assert main(command) == 0
    results = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(result["id"] for result in results) == sorted(f"job-{n}" for n in range(30))
    assert {result["status"] for result in results} == {"SUCCESS"}
    assert all(result["result"]["cached"] is False for result in results)
    assert calls(counting_fleet.redis, "counting") == before + 30

    assert main(command) == 0
    assert calls(counting_fleet.redis, "counting") == before + 30
    assert len(out.read_text(encoding="utf-8").splitlines()) == 30
