"""Flower, as `stepper flower` runs it: authenticated, listing the running workers and a finished task."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from celery.utils.saferepr import saferepr

from tests.integration.conftest import COUNTING_CHAINS, Fleet
from tests.support.redis_server import free_port

AUTH = ("operator", "flower-test-password")


@pytest.fixture(scope="module")
def watched_fleet(start_fleet: Callable[..., Fleet]) -> Fleet:
    """Heartbeats on: Flower switches task events on through the worker's event dispatcher."""
    return start_fleet({"stepper_chains": COUNTING_CHAINS}, name="watched", heartbeat=True)


@pytest.fixture
def flower(watched_fleet: Fleet) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "STEPPER_REDIS_URL": watched_fleet.url,
           "STEPPER_FLOWER_USER": AUTH[0], "STEPPER_FLOWER_PASSWORD": AUTH[1]}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "stepper", "flower", f"--port={port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def poll(url: str, ready: Any, timeout_s: float = 45) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = requests.get(url, auth=AUTH, timeout=5)
            if answer.ok and ready(answer.json()):
                return answer.json()
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered as expected"
        time.sleep(0.5)


def test_flower_lists_workers_and_a_finished_task(watched_fleet: Fleet, flower: str) -> None:
    workers = poll(f"{flower}/api/workers?refresh=1", lambda body: watched_fleet.worker.name in body)
    assert "chat" in {queue["name"] for queue in workers[watched_fleet.worker.name]["active_queues"]}
    assert requests.get(f"{flower}/api/workers", timeout=5).status_code == 401  # no credentials, no data

    task_id, answer = "", None
    deadline = time.monotonic() + 45
    while True:  # Flower switches task events on in the workers shortly after it starts
        result = watched_fleet.app.send_task("stepper.chat", kwargs={"messages": [{"role": "user", "content": "x"}]})
        answer = result.get(timeout=30)
        tasks = requests.get(f"{flower}/api/tasks", auth=AUTH, timeout=5).json()
        if result.id in tasks:
            task_id = result.id
            break
        assert time.monotonic() < deadline, "Flower never saw a task"
        time.sleep(1)
    # Its events arrive one by one: wait for the last.
    finished = poll(f"{flower}/api/tasks", lambda body: body.get(task_id, {}).get("state") == "SUCCESS")
    assert finished[task_id]["name"] == "stepper.chat"
    # The start of the result, as Celery words it (stepper.workers.result_repr makes it only for the event).
    assert finished[task_id]["result"] == saferepr(answer, 160)


def test_flower_refuses_to_start_unauthenticated() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPPER_FLOWER_")}
    done = subprocess.run([sys.executable, "-m", "stepper", "flower"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2 and "refusing to start Flower without authentication" in done.stderr
