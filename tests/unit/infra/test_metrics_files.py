"""Dead processes' metrics files are folded into archives: the totals stay, the directory does not grow."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from stepper.infra import metrics_files
from stepper.infra.metrics_files import ConsistentCollector, merge_dead_processes

CHILD = """
from stepper.infra import metrics
for _ in range({tasks}):
    metrics.record_task("chat", "success", 0.3)
metrics.record_attempt("chat", "openai", "ok", 250.0)
"""


def run_child(directory: Path, tasks: int) -> None:
    """A process that records metrics and exits, as a recycled pool child does."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", CHILD.format(tasks=tasks)], env=env, check=True, timeout=60)


def scrape(directory: Path) -> dict[str, float]:
    registry = CollectorRegistry()
    ConsistentCollector(registry, path=str(directory))
    lines = generate_latest(registry).decode().splitlines()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith(("stepper_tasks_total", "stepper_task_seconds_count", "stepper_task_seconds_bucket"))
    }


def test_dead_processes_are_merged_and_the_totals_are_unchanged(tmp_path: Path) -> None:
    for tasks in (3, 4, 5):
        run_child(tmp_path, tasks)
    before = scrape(tmp_path)
    assert before['stepper_tasks_total{kind="chat",outcome="success"}'] == 12
    assert len(list(tmp_path.glob("*.db"))) == 6  # a counter and a histogram file per dead child

    assert merge_dead_processes(tmp_path) == 6
    assert sorted(path.name for path in tmp_path.glob("*.db")) == ["counter_archive.db", "histogram_archive.db"]
    assert scrape(tmp_path) == before

    run_child(tmp_path, 2)  # the next recycled child
    assert merge_dead_processes(tmp_path) == 2
    after = scrape(tmp_path)
    assert after['stepper_tasks_total{kind="chat",outcome="success"}'] == 14
    assert after['stepper_task_seconds_bucket{kind="chat",le="0.5"}'] == 14
    assert len(list(tmp_path.glob("*.db"))) == 2


def test_a_live_process_s_files_stay(tmp_path: Path) -> None:
    live = tmp_path / f"counter_{os.getpid()}.db"
    live.write_bytes(b"")
    assert merge_dead_processes(tmp_path) == 0
    assert live.exists()


def test_a_merge_waits_for_a_scrape_that_listed_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scrape lists the files, then reads them: a merge in between removed a listed file and failed the scrape
    (FileNotFoundError, met in CI with a worker recycling its pool processes)."""
    run_child(tmp_path, 3)
    merge = threading.Thread(target=merge_dead_processes, args=(tmp_path,))
    read = metrics_files.MmapedDict.read_all_values_from_file

    def read_after_a_merge_had_its_chance(path: str) -> Any:
        if threading.current_thread() is threading.main_thread() and not merge.is_alive() and not merge.ident:
            merge.start()
            merge.join(timeout=0.5)  # the merge cannot run while the scrape holds the lock
        return read(path)

    monkeypatch.setattr(metrics_files.MmapedDict, "read_all_values_from_file", read_after_a_merge_had_its_chance)
    totals = scrape(tmp_path)
    merge.join(timeout=10)
    assert not merge.is_alive()  # ...and ran once the scrape was done
    assert totals['stepper_tasks_total{kind="chat",outcome="success"}'] == 3
    assert sorted(path.name for path in tmp_path.glob("*.db")) == ["counter_archive.db", "histogram_archive.db"]
