"""`stepper fleet up`: one worker per profile, and a warm shutdown that lets tasks in flight finish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from stepper.workers.profiles import PROFILES
from tests.integration.conftest import TEST_PROVIDERS, producer_app
from tests.support.providers import ORDER_KEY
from tests.support.redis_server import RESERVED_DATABASES, RedisServer
from tests.support.workers import REPO_ROOT, write_config


def test_profiles_cover_every_queue() -> None:
    consumed = {queue for profile in PROFILES.values() for queue in profile.queues}
    assert consumed == {"report", "chat", "ocr", "steps", "vision", "speech", "callbacks", "workflows"}
    assert PROFILES["cpu"].pool == "prefork" and PROFILES["llm"].pool == "threads"


def test_fleet_up_serves_and_stops_warmly(redis_server: RedisServer, tmp_path: Path) -> None:
    database = RESERVED_DATABASES["fleet"]
    url = f"redis://127.0.0.1:{redis_server.port}/{database}"
    providers = {
        **TEST_PROVIDERS,
        "slow": {"class": "tests.support.providers:SlowChat", "options": {"delay_s": 2.0}},
    }
    settings = {"stepper_providers": providers, "stepper_chains": {"chat": ["slow:slow-model"]}}
    fleet, log = fleet_up(url, settings, "llm,ops", tmp_path)
    try:
        deadline = time.monotonic() + 60
        while log.read_text(errors="replace").count("ready.") < 2:
            assert fleet.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        app = producer_app(url)
        client = redis_server.client()
        client.select(database)
        result = app.send_task("stepper.chat", kwargs={"messages": [{"role": "user", "content": "in flight"}]})
        while client.llen(ORDER_KEY) == 0:
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.05)
        fleet.send_signal(signal.SIGTERM)  # mid-task
        assert fleet.wait(timeout=60) == 0
        assert result.get(timeout=5)["output"]["message"]["content"].endswith("in flight")
        assert "warm shutdown" in log.read_text()
    finally:
        if fleet.poll() is None:
            fleet.kill()


def test_fleet_up_restarts_a_worker_that_dies(redis_server: RedisServer, tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/{RESERVED_DATABASES['fleet']}"
    settings = {"stepper_providers": TEST_PROVIDERS, "stepper_chains": {"chat": ["counting:m"]}}
    fleet, log = fleet_up(url, settings, "llm", tmp_path)
    try:
        _wait_for(log, "ready.", 1)
        first_pid = int(log.read_text().split("llm worker started (pid ", 1)[1].split(")", 1)[0])
        os.kill(first_pid, signal.SIGKILL)  # as the OOM killer would
        _wait_for(log, "ready.", 2)
        assert "llm worker exited (status -9); restarting it" in log.read_text()
        app = producer_app(url)
        answer = app.send_task("stepper.chat", kwargs={"messages": [{"role": "user", "content": "after"}]})
        assert answer.get(timeout=30)["provider"] == "counting"
        fleet.send_signal(signal.SIGTERM)
        assert fleet.wait(timeout=60) == 0
    finally:
        if fleet.poll() is None:
            fleet.kill()


def fleet_up(
    url: str, settings: dict[str, Any], profiles: str, directory: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    """Run ``stepper fleet up --profiles <profiles>`` with ``settings``; the process and its log file."""
    module = write_config(directory, settings)
    env = {**os.environ, "STEPPER_REDIS_URL": url, "CELERY_CONFIG_MODULE": module,
           "PYTHONPATH": f"{directory}{os.pathsep}{REPO_ROOT}"}  # fmt: skip
    log = directory / "fleet.log"
    with log.open("wb") as out:
        fleet = subprocess.Popen(
            [sys.executable, "-m", "stepper", "fleet", "up", "--profiles", profiles],
            cwd=directory, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return fleet, log


def _wait_for(log: Path, text: str, count: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while log.read_text(errors="replace").count(text) < count:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
