"""What every benchmark shares: a private Redis, real workers, a timer, and one shape for every result."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from shutil import which
from typing import Any

from celery import Celery

from stepper.celery import create_app
from stepper.config import load_config
from tests.support.redis_server import RedisServer
from tests.support.workers import REPO_ROOT, Worker, start_celery_worker, start_worker

#: The kernel's clock ticks per second, the unit of /proc/<pid>/stat's CPU times.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Measurement:
    name: str
    items: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.items / self.seconds


@dataclass(frozen=True)
class Figure:
    """One side of a comparison: what was measured, how much, in what unit."""

    name: str
    value: float
    unit: str


def compare(
    candidate: Figure, baseline: Figure, target: str, met: bool, ratio: float | None = None, **details: Any
) -> dict[str, Any]:
    """A benchmark's result as ``__main__`` prints it and bench-results.json keeps it.

    ``ratio`` is candidate over baseline unless given (a median of per-round ratios); ``target`` says in words
    what ``met`` was decided on: a ratio, or an absolute figure when the ratio is only context.
    """
    return {
        "candidate": {"name": candidate.name, "value": _rounded(candidate.value), "unit": candidate.unit},
        "baseline": {"name": baseline.name, "value": _rounded(baseline.value), "unit": baseline.unit},
        "ratio": round(candidate.value / baseline.value if ratio is None else ratio, 2),
        "target": target,
        "met": met,
        **details,
    }


def _rounded(value: float) -> float:
    return round(value, 3 if abs(value) < 10 else 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``samples`` (0.5: the median), interpolated."""
    if fraction == 0.5:
        return statistics.median(samples)
    return statistics.quantiles(samples, n=100, method="inclusive")[round(fraction * 100) - 1]


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
    with fleet_at(redis_url(redis, database), settings, **options) as started:
        yield started


@contextmanager
def fleet_at(
    url: str, settings: dict[str, Any], broker_url: str | None = None, **options: Any
) -> Iterator[tuple[Celery, Worker]]:
    """A stepper worker and a producer app with results and state at ``url`` (any Redis URL, ``sentinel://``
    too) and the messages there as well, or on ``broker_url`` (RabbitMQ's ``amqp://``)."""
    environ = {"STEPPER_REDIS_URL": url, "CELERY_CONFIG_MODULE": "bench_absent"}
    if broker_url:
        environ["STEPPER_BROKER_URL"] = broker_url
        options["env"] = {**options.get("env", {}), "STEPPER_BROKER_URL": broker_url}
    with tempfile.TemporaryDirectory() as directory:
        worker = start_worker(url, Path(directory), settings, **options)
        try:
            yield (
                create_app({**load_config(environ), "stepper_rabbitmq": settings.get("stepper_rabbitmq", {})}),
                worker,
            )
        finally:
            worker.stop()


def redis_url(redis: RedisServer, database: int) -> str:
    return f"redis://127.0.0.1:{redis.port}/{database}"


def run_probe(module: str, redis_url: str, timeout_s: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m <module>`` as a producer of the fleet at ``redis_url`` and return the JSON it prints.

    A probe measures in a process of its own because stepper's producer reads its Redis URL and mode from the
    environment when it is first imported.
    """
    probe = subprocess.run(  # noqa: S603  (this interpreter, a bench module, no shell)
        [sys.executable, "-m", module],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            **(env or {}),
            "STEPPER_REDIS_URL": redis_url,
            "CELERY_CONFIG_MODULE": "tests.support.no_deployment_config",
            "PYTHONPATH": str(REPO_ROOT),
        },
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if probe.returncode != 0:
        raise RuntimeError(f"{module} failed ({probe.returncode}):\n{probe.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(probe.stdout)
    return figures


@contextmanager
def bare_worker(redis: RedisServer, database: int, **options: Any) -> Iterator[tuple[Celery, Worker]]:
    """A ``bench.bare_app`` worker and a producer app on the same Redis database."""
    from bench import bare_app

    url = redis_url(redis, database)
    with tempfile.TemporaryDirectory() as directory:
        worker = start_celery_worker("bench.bare_app", Path(directory), {bare_app.BROKER_ENV: url}, **options)
        try:
            yield bare_app.create_app(url), worker
        finally:
            worker.stop()
