"""What every benchmark shares: a private Redis, real workers, and a timer."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from shutil import which
from typing import Any

from celery import Celery

from stepper.celery import create_app
from stepper.config import load_config
from tests.support.redis_server import RedisServer
from tests.support.workers import Worker, start_worker


@dataclass
class Measurement:
    name: str
    items: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.items / self.seconds


def progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def timed(name: str, items: int, run: Callable[[], Any]) -> Measurement:
    started = time.perf_counter()
    run()
    return Measurement(name, items, time.perf_counter() - started)


@contextmanager
def private_redis() -> Iterator[RedisServer]:
    binary = which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: run `make system-deps` (or apt-get install redis-server)")
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(binary, Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextmanager
def fleet(
    redis: RedisServer, database: int, settings: dict[str, Any], **options: Any
) -> Iterator[tuple[Celery, Worker]]:
    url = f"redis://127.0.0.1:{redis.port}/{database}"
    with tempfile.TemporaryDirectory() as directory:
        worker = start_worker(url, Path(directory), settings, **options)
        try:
            yield create_app(load_config({"STEPPER_REDIS_URL": url, "CELERY_CONFIG_MODULE": "bench_absent"})), worker
        finally:
            worker.stop()
