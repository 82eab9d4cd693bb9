"""``stepper gateway`` in a subprocess, as an operator starts it, in front of a test fleet's Redis database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.support.redis_server import free_port
from tests.support.workers import REPO_ROOT, write_config


@dataclass
class RunningGateway:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_gateway(
    redis_url: str, directory: Path, settings: dict[str, Any], *args: str, env: dict[str, str] | None = None
) -> Iterator[RunningGateway]:
    """Start the gateway on a free loopback port with ``settings`` as its config module; stop it afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    module = write_config(directory, settings)
    port = free_port()
    log_path = directory / f"gateway-{port}.log"
    process_env = {
        **os.environ,
        "STEPPER_REDIS_URL": redis_url,
        "CELERY_CONFIG_MODULE": module,
        "PYTHONPATH": os.pathsep.join([str(directory), str(REPO_ROOT)]),
        **(env or {}),
    }
    command = [sys.executable, "-m", "stepper", "gateway", "--host", "127.0.0.1", "--port", str(port), *args]
    with serving_http(command, port, directory, process_env, log_path) as gateway:
        yield gateway


@contextmanager
def serving_http(
    command: list[str], port: int, cwd: Path, env: dict[str, str], log_path: Path
) -> Iterator[RunningGateway]:
    """Run ``command``, an HTTP server on 127.0.0.1:``port`` that answers ``/health/live``, with its output in
    ``log_path``; yield it once it answers (``RuntimeError`` with its log if it exits or stays silent first), and
    stop it afterwards (terminated, killed if it still runs 20 s later)."""
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    server = RunningGateway(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_live(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_live(gateway: RunningGateway, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            raise RuntimeError(f"the gateway exited ({gateway.process.returncode}):\n{gateway.log()[-4000:]}")
        try:
            if requests.get(f"{gateway.url}/health/live", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the gateway did not answer within {timeout_s}s:\n{gateway.log()[-4000:]}")
