"""Real Celery workers in subprocesses, each with its own config module written for the test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    config_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "ready." in self.log():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited ({self.process.returncode}):\n{self.log()[-4000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"worker {self.name} not ready after {timeout_s}s:\n{self.log()[-4000:]}")

    def pool_children(self) -> list[int]:
        """The pids of the worker's pool processes (prefork)."""
        pid = self.process.pid
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def stop(self, timeout_s: float = 20) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def write_config(directory: Path, settings: dict[str, Any]) -> str:
    """Write a config module of ``settings`` into ``directory``; returns its module name."""
    module = f"stepper_test_config_{uuid.uuid4().hex[:8]}"
    lines = [f"{key} = {value!r}" for key, value in settings.items()]
    (directory / f"{module}.py").write_text("\n".join(lines) + "\n")
    return module


def start_worker(
    redis_url: str,
    directory: Path,
    settings: dict[str, Any],
    *,
    name: str = "test",
    pool: str = "threads",
    concurrency: int = 4,
    queues: list[str] | None = None,
    env: dict[str, str] | None = None,
    heartbeat: bool = False,
) -> Worker:
    """Start ``celery -A stepper worker`` with ``settings`` as its config module, and wait until it is ready."""
    directory.mkdir(parents=True, exist_ok=True)
    module = write_config(directory, settings)
    worker_env = {
        "STEPPER_REDIS_URL": redis_url,
        "CELERY_CONFIG_MODULE": module,
        "PYTHONPATH": os.pathsep.join([str(directory), str(REPO_ROOT)]),
        **(env or {}),
    }
    return start_celery_worker(
        "stepper",
        directory,
        worker_env,
        name=name,
        pool=pool,
        concurrency=concurrency,
        queues=queues or (),
        heartbeat=heartbeat,
    )


def start_celery_worker(
    app: str,
    directory: Path,
    env: dict[str, str],
    *,
    name: str,
    pool: str = "threads",
    concurrency: int = 4,
    queues: Sequence[str] = (),
    heartbeat: bool = False,
) -> Worker:
    """Start ``celery -A <app> worker`` for any app importable from the repository, and wait until it is ready.

    Gossip, mingle and heartbeats are off unless asked for (they slow start-up and chatter between test
    fleets); a worker without heartbeats cannot have task events switched on remotely, as Flower does.
    """
    directory.mkdir(parents=True, exist_ok=True)
    hostname = f"{name}-{uuid.uuid4().hex[:6]}@localhost"
    log_path = directory / f"{hostname}.log"
    command = [
        sys.executable, "-m", "celery", "-A", app, "worker",
        "--loglevel", "INFO",
        "--pool", pool,
        "--concurrency", str(concurrency),
        "--hostname", hostname,
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    if not heartbeat:
        command.append("--without-heartbeat")
    if queues:
        command += ["--queues", ",".join(queues)]
    process_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=directory, env=process_env, stdout=log_file, stderr=subprocess.STDOUT)
    worker = Worker(hostname, process, log_path, directory)
    try:
        worker.wait_ready()
    except RuntimeError:
        worker.stop()
        raise
    return worker
