"""`stepper status` and `stepper health` against a running fleet, as an operator (or a probe) runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from stepper.infra.keys import breaker as breaker_namespace
from tests.integration.conftest import Fleet
from tests.support.redis_server import RESERVED_DATABASES, RedisServer, free_port


def stepper_cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stepper", *args],
        env={**os.environ, "STEPPER_REDIS_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_health_follows_consumers_and_breakers(counting_fleet: Fleet) -> None:
    healthy = stepper_cli("health", "--json", url=counting_fleet.url)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert json.loads(healthy.stdout) == {"healthy": True, "problems": []}

    state_key = f"{breaker_namespace('acme')}:pybreaker:state"
    counting_fleet.redis.set(state_key, "open")
    try:
        broken = stepper_cli("health", "--json", url=counting_fleet.url)
    finally:
        counting_fleet.redis.delete(state_key)
    assert broken.returncode == 1
    assert json.loads(broken.stdout)["problems"] == ["circuit breaker of acme is open"]


def test_health_fails_without_redis() -> None:
    down = stepper_cli("health", url=f"redis://127.0.0.1:{free_port()}/0")
    assert down.returncode == 1
    assert "unhealthy: Redis unreachable" in down.stdout


def test_status_counts_every_priority_list(redis_server: RedisServer) -> None:
    database = RESERVED_DATABASES["status"]  # a database no worker consumes
    idle = f"redis://127.0.0.1:{redis_server.port}/{database}"
    client = redis_server.client()
    client.select(database)
    client.rpush("steps", b"a", b"b")
    client.rpush("steps\x06\x167", b"c")
    try:
        state = json.loads(stepper_cli("status", "--json", url=idle).stdout)
    finally:
        client.flushdb()
    assert state["queues"]["steps"]["0"] == 2 and state["queues"]["steps"]["7"] == 1
    assert sum(state["queues"]["steps"].values()) == 3 and state["workers"] == []


def test_status_shows_the_workers(counting_fleet: Fleet) -> None:
    state = json.loads(stepper_cli("status", "--json", url=counting_fleet.url).stdout)
    (worker,) = state["workers"]
    assert worker["name"] == counting_fleet.worker.name and worker["pool"] == "thread"
    assert set(worker["queues"]) >= {"report", "chat", "ocr", "steps", "vision", "speech"}
    text = stepper_cli("status", url=counting_fleet.url).stdout
    assert "queues (messages waiting by priority" in text and counting_fleet.worker.name in text
