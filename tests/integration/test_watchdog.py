"""Never stall: a real worker alive but consuming nothing while work waits exits to be restarted, and a fresh
worker takes the work. The stall is made as an operator (or a broken reconnect) would: the consumer of the
worker's queue is cancelled while the process lives on."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import COUNTING_CHAINS, TEST_PROVIDERS, Fleet
from tests.support.workers import start_worker

HELLO = {"messages": [{"role": "user", "content": "hello"}]}
SETTINGS = {
    "stepper_providers": TEST_PROVIDERS,
    "stepper_chains": COUNTING_CHAINS,
    "stepper_recovery": {"stall_s": 3, "lease_s": 2},
}


def test_a_worker_that_stopped_consuming_exits_and_its_work_is_done_by_the_next(
    start_fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    liveness = tmp_path / "alive"
    fleet = start_fleet(SETTINGS, name="stalling", queues=["chat"], env={"STEPPER_LIVENESS_FILE": str(liveness)})
    assert fleet.app.send_task("stepper.chat", kwargs=HELLO).get(timeout=30)["provider"] == "counting"
    deadline = time.monotonic() + 10
    while not liveness.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert liveness.exists()  # touched while the worker consumes

    fleet.app.control.cancel_consumer("chat", destination=[fleet.worker.name], reply=True, timeout=5)
    waiting = [fleet.app.send_task("stepper.chat", kwargs=HELLO) for _ in range(5)]
    assert fleet.worker.process.wait(timeout=60) == 70
    assert "this worker stopped consuming" in fleet.worker.log()
    assert "messages wait (chat 5)" in fleet.worker.log()

    replacement = start_worker(fleet.url, tmp_path / "replacement", SETTINGS, name="replacement", queues=["chat"])
    try:
        assert all(result.get(timeout=60)["provider"] == "counting" for result in waiting)
    finally:
        replacement.stop()


def test_a_busy_or_idle_worker_is_not_a_stalled_one(start_fleet: Callable[..., Fleet]) -> None:
    fleet = start_fleet(SETTINGS, name="idle", queues=["chat"])
    time.sleep(5)  # longer than stall_s with nothing to do: idle, not stalled
    assert fleet.worker.process.poll() is None
    assert fleet.app.send_task("stepper.chat", kwargs=HELLO).get(timeout=30)["provider"] == "counting"


def test_a_warm_shutdown_is_not_taken_for_a_stall(start_fleet: Callable[..., Fleet]) -> None:
    """The consumer stops first in a warm shutdown while a long task finishes: the watchdog must let it."""
    slow = {"class": "tests.support.providers:SlowChat", "options": {"delay_s": 8.0}}
    settings = {
        **SETTINGS,
        "stepper_providers": {**TEST_PROVIDERS, "slow": slow},
        "stepper_chains": {"chat": ["slow:m"]},
    }
    fleet = start_fleet(settings, name="warm", queues=["chat"])
    running = fleet.app.send_task("stepper.chat", kwargs=HELLO)
    deadline = time.monotonic() + 30
    while running.state == "PENDING" and not fleet.redis.llen("test:order") and time.monotonic() < deadline:
        time.sleep(0.1)
    fleet.app.send_task("stepper.chat", kwargs=HELLO)  # work left waiting while the worker shuts down
    fleet.worker.process.send_signal(signal.SIGTERM)
    assert fleet.worker.process.wait(timeout=60) == 0  # warm shutdown, not exit 70 (stall_s is 3 s)
    assert running.get(timeout=5)["output"]["message"]["content"].endswith("hello")
