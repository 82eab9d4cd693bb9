"""Prometheus metrics from real prefork workers (multiprocess mode) and the fleet collector."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stepper.errors import InvalidRequest
from stepper.infra.metrics_files import ConsistentCollector
from stepper.ops.exporter import FleetCollector
from tests.integration.conftest import COUNTING_CHAINS, Fleet
from tests.support.redis_server import free_port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_prefork_workers_report_every_child(start_fleet: Callable[..., Fleet], tmp_path: Path) -> None:
    port = free_port()
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    fleet = start_fleet(
        {"stepper_chains": COUNTING_CHAINS},
        name="metrics",
        pool="prefork",
        concurrency=2,
        env={"PROMETHEUS_MULTIPROC_DIR": str(multiproc), "STEPPER_METRICS_PORT": str(port)},
    )
    hello = {"messages": [{"role": "user", "content": "count me"}]}
    for result in [fleet.app.send_task("stepper.chat", kwargs=hello) for _ in range(6)]:
        result.get(timeout=30)
    with pytest.raises(InvalidRequest):
        fleet.app.send_task("stepper.chat", kwargs={"messages": []}).get(timeout=30)

    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found = samples(text)
    assert found[("stepper_tasks_total", (("kind", "chat"), ("outcome", "success")))] == 6
    assert found[("stepper_tasks_total", (("kind", "chat"), ("outcome", "invalid")))] == 1
    attempts = (("kind", "chat"), ("outcome", "ok"), ("provider", "counting"))
    assert found[("stepper_provider_attempts_total", attempts)] == 6
    assert found[("stepper_task_seconds_count", (("kind", "chat"),))] == 7
    assert "count me" not in text and "task_id" not in text  # no prompts or ids in labels


def test_fleet_collector_reads_queues_and_workers(counting_fleet: Fleet) -> None:
    registry = CollectorRegistry()
    registry.register(FleetCollector(counting_fleet.app, counting_fleet.redis))
    found = samples(generate_latest(registry).decode())
    assert found[("stepper_redis_up", ())] == 1
    assert found[("stepper_workers_up", (("queue", "chat"),))] == 1
    assert found[("stepper_queue_depth", (("priority", "9"), ("queue", "ocr")))] == 0


def test_recycled_pool_processes_leave_no_files_behind(start_fleet: Callable[..., Fleet], tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    fleet = start_fleet(
        {
            "stepper_chains": COUNTING_CHAINS,
            "stepper_recovery": {"lease_s": 1},
            "worker_max_tasks_per_child": 1,  # a new pool process for every task
        },
        name="recycling",
        pool="prefork",
        concurrency=2,
        queues=["chat"],
        env={"PROMETHEUS_MULTIPROC_DIR": str(directory)},
    )
    for _ in range(12):
        fleet.app.send_task("stepper.chat", kwargs={"messages": [{"role": "user", "content": "x"}]}).get(timeout=30)
    deadline = time.monotonic() + 20
    while len(list(directory.glob("*_[0-9]*.db"))) > 4 and time.monotonic() < deadline:  # two live children
        time.sleep(0.2)
    assert len(list(directory.glob("*_[0-9]*.db"))) <= 4, sorted(path.name for path in directory.iterdir())
    registry = CollectorRegistry()
    ConsistentCollector(registry, path=str(directory))  # what a worker's /metrics reads it with
    exported = generate_latest(registry).decode()
    assert 'stepper_tasks_total{kind="chat",outcome="success"} 12.0' in exported  # no dead child's count lost


def test_nothing_grows_with_tasks_and_recycled_pool_processes(
    start_fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    """Open files and Redis connections of a worker that recycles a pool process per task stay flat."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    fleet = start_fleet(
        {"stepper_chains": COUNTING_CHAINS, "stepper_recovery": {"lease_s": 1}, "worker_max_tasks_per_child": 1},
        name="steady",
        pool="prefork",
        concurrency=2,
        queues=["chat"],
        env={"PROMETHEUS_MULTIPROC_DIR": str(directory)},
    )
    pid = fleet.worker.process.pid
    database = fleet.url.rsplit("/", 1)[1]

    def run(count: int) -> tuple[int, int]:
        for _ in range(count):
            fleet.app.send_task("stepper.chat", kwargs={"messages": [{"role": "user", "content": "y"}]}).get(timeout=30)
        time.sleep(1.5)  # a housekeeping round: dead children's files merged
        open_files = len(list(Path(f"/proc/{pid}/fd").iterdir()))
        return open_files, sum(client["db"] == database for client in fleet.redis.client_list())

    run(10)  # warmed up: every pool and connection the worker keeps is open
    files_after_warm_up, connections_after_warm_up = run(5)
    files_after_more, connections_after_more = run(30)
    assert files_after_more <= files_after_warm_up + 2, (files_after_warm_up, files_after_more)
    assert connections_after_more <= connections_after_warm_up + 2, (connections_after_warm_up, connections_after_more)
