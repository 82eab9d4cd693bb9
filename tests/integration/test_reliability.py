"""What must never happen: a pickled message executed, a task lost with its worker, a worker that
cannot start without a config module or starts with a broken one."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from kombu import Connection

from tests.integration.conftest import COUNTING_CHAINS, Fleet
from tests.support.providers import ORDER_KEY, calls, run_order
from tests.support.workers import REPO_ROOT


class _Exploit:
    """Unpickling this touches a file: proof that a worker deserialised pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, ...]]:
        return (os.system, (f"touch {self.marker}",))


def test_pickled_message_is_refused_and_the_worker_keeps_working(
    start_fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    fleet = start_fleet({"stepper_chains": COUNTING_CHAINS}, name="pickle")
    marker = tmp_path / "pwned"
    request = {"messages": [{"role": "user", "content": "pickled"}]}
    pickled_id = str(uuid.uuid4())
    with Connection(fleet.url) as connection:
        connection.default_channel.basic_publish(
            connection.default_channel.prepare_message(
                pickle.dumps(((), request, {"exploit": _Exploit(marker)})),
                content_type="application/x-python-serialize",
                content_encoding="binary",
                headers={"task": "stepper.chat", "id": pickled_id, "lang": "py", "argsrepr": "", "kwargsrepr": ""},
                properties={"correlation_id": pickled_id, "priority": 0},
            ),
            exchange="",
            routing_key="chat",
        )
    before = calls(fleet.redis, "counting")
    ok = fleet.app.send_task("stepper.chat", kwargs={"messages": [{"role": "user", "content": "json"}]})
    assert ok.get(timeout=30)["kind"] == "chat"

    assert not marker.exists()
    assert calls(fleet.redis, "counting") == before + 1
    assert fleet.app.AsyncResult(pickled_id).state == "PENDING"
    assert "Refusing to deserialize" in fleet.worker.log()
    assert fleet.worker.process.poll() is None


def test_task_of_a_killed_pool_process_is_requeued_and_completes(start_fleet: Callable[..., Fleet]) -> None:
    fleet = start_fleet(
        {
            "stepper_chains": {"chat": ["slow:slow-model"]},
            "stepper_providers": {"slow": {"class": "tests.support.providers:SlowChat", "options": {"delay_s": 2.0}}},
        },
        name="killed",
        pool="prefork",
        concurrency=1,
    )
    result = fleet.app.send_task("stepper.chat", kwargs={"messages": [{"role": "user", "content": "survivor"}]})
    deadline = time.monotonic() + 30
    while fleet.redis.llen(ORDER_KEY) == 0:
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    (child,) = fleet.worker.pool_children()
    os.kill(child, signal.SIGKILL)  # the OOM killer's way

    assert result.get(timeout=60)["output"]["message"]["content"].endswith("survivor")
    assert run_order(fleet.redis) == ["survivor", "survivor"]


def _python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"CELERY_CONFIG_MODULE", "STEPPER_MODE"}}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**clean, "PYTHONPATH": f"{cwd}{os.pathsep}{REPO_ROOT}", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


SHOW = "from stepper.celery import app; c = app.conf; print(c.stepper_mode, c.task_acks_late, c.accept_content)"


def test_app_starts_with_defaults_when_no_config_module_exists(tmp_path: Path) -> None:
    done = _python(SHOW, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["live", "True", "['json']"]


def test_config_module_in_the_working_directory_is_used(tmp_path: Path) -> None:
    (tmp_path / "celeryconfig.py").write_text('stepper_mode = "mock"\n')
    assert _python(SHOW, tmp_path).stdout.split()[0] == "mock"
    # The environment overrides the module.
    assert _python(SHOW, tmp_path, STEPPER_MODE="hybrid").stdout.split()[0] == "hybrid"


def test_worker_refuses_to_start_with_a_broken_config(tmp_path: Path) -> None:
    (tmp_path / "celeryconfig.py").write_text('stepper_chains = {"chat": ["nowhere:model"]}\n')
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "stepper", "worker", "--pool", "solo"],
        cwd=tmp_path,
        env={**os.environ, "CELERY_CONFIG_MODULE": "celeryconfig", "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO_ROOT}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "'nowhere'" in done.stderr and "stepper_providers" in done.stderr
