"""I/O-bound fleet: ``stepper.chat`` against a provider that answers in 100 ms, beside bare Celery doing the same.

The provider is bench/fake_openai.py in a process of its own, answering every chat after ``LATENCY_S``.
stepper runs live, with a chat chain of one OpenAI-compatible provider pointed at the fake (rate limits far
too high ever to wait, so the Lua admission script runs but never throttles), on one worker started as the
``llm`` profile runs it (threads, concurrency 32, queues report and chat). The baseline is ``bare.chat``
(bench/bare_io_app.py): a bare Celery task posting the same JSON with ``requests`` to the same fake, on the
same pool and concurrency. Every request differs and is at temperature 0, so stepper takes a chat's whole
path (cache miss, breaker and rate-limit admission, cache write) and every task reaches the fake.

Each side gets ``TASKS`` tasks, all sent with ``send_task`` (the same producer cost on both sides), then
awaited. On 2 cores the fake, the producer and the worker compete and a single run swings by about 30 %,
so the sides alternate for ``ROUNDS`` rounds and the median of the per-round ratios is reported, with each
side's throughput as a fraction of the theoretical ``concurrency / latency``, and each worker's CPU per task.
Target (performance issue): at least bare Celery's throughput, at no more CPU per task.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from celery import Celery

from bench import bare_app, bare_io_app
from bench.fake_openai import API_KEY
from bench.harness import Figure, compare, cpu_seconds, fleet, progress, redis_url, timed
from stepper.workers.profiles import PROFILES
from tests.support.redis_server import RedisServer
from tests.support.workers import REPO_ROOT, Worker, start_celery_worker

LATENCY_S = 0.1
TASKS = 1500
WARM_UP = 64
ROUNDS = 5
TARGET = 1.0
KEY_ENV = "BENCH_FAKE_OPENAI_KEY"
PROFILE = PROFILES["llm"]
CONCURRENCY = PROFILE.concurrency or 32

Send = Callable[[dict[str, Any]], Any]


def stepper_settings(base_url: str) -> dict[str, Any]:
    """Live mode; chat and report served only by ``bench``, the fake, with limits that never make a call wait."""
    chain = [f"bench:{bare_io_app.MODEL}"]
    return {
        "stepper_mode": "live",
        "stepper_providers": {
            "bench": {
                "class": "stepper.providers.openai:OpenAIProvider",
                "kinds": ["chat", "report"],
                "base_url": base_url,
                "api_key_env": KEY_ENV,
                "models": [bare_io_app.MODEL],
                "rpm": 10_000_000,
                "tpm": 10_000_000_000,
            },
        },
        "stepper_chains": {"chat": chain, "report": chain},
    }


def chat_request(label: str, index: int) -> dict[str, Any]:
    """Different for every (label, index), so nothing is ever answered from the cache."""
    content = f"io {label} #{index}: hello"
    return {"messages": [{"role": "user", "content": content}], "temperature": 0, "max_tokens": 64}


@contextmanager
def fake_provider(latency_s: float, *options: str) -> Iterator[str]:
    """Start bench.fake_openai in its own process (``options``: more of its arguments); yield its ``/v1`` base
    URL."""
    command = [sys.executable, "-m", "bench.fake_openai", "--latency", str(latency_s), *options]
    # Our own interpreter and arguments; nothing from outside reaches the command line.
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)  # noqa: S603
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"bench.fake_openai did not start (exit {process.poll()}): {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[-1])}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def bare_io_worker(
    redis: RedisServer, database: int, base_url: str, pool: str = PROFILE.pool, concurrency: int = CONCURRENCY
) -> Iterator[tuple[Celery, Worker]]:
    """A ``bench.bare_io_app`` worker (the llm profile's pool and concurrency unless told), its pools sized for
    its concurrency, and a producer app."""
    url = redis_url(redis, database)
    env = {
        bare_app.BROKER_ENV: url,
        bare_io_app.FAKE_URL_ENV: base_url,
        bare_io_app.KEY_ENV: API_KEY,
        bare_io_app.CONCURRENCY_ENV: str(concurrency),
    }
    with tempfile.TemporaryDirectory() as directory:
        worker = start_celery_worker(
            "bench.bare_io_app", Path(directory), env, name="bench-bare-io", pool=pool, concurrency=concurrency
        )
        try:
            yield bare_io_app.create_app(url, base_url, API_KEY, concurrency), worker
        finally:
            worker.stop()


def throughput(send: Send, label: str, tasks: int) -> float:
    """Tasks per second: ``tasks`` sent, then every result awaited (a failed task raises here); the worker's CPU
    per task is read around it by the caller."""

    def send_and_wait() -> None:
        pending = [send(chat_request(label, index)) for index in range(tasks)]
        for result in pending:
            result.get(timeout=120)

    return timed(label, tasks, send_and_wait).per_second


def run(redis: RedisServer) -> dict[str, dict[str, Any]]:
    theoretical = CONCURRENCY / LATENCY_S
    progress(f"io_fleet: a fake provider answering in {LATENCY_S * 1000:g} ms, an llm-profile stepper worker "
             f"({PROFILE.pool} x{CONCURRENCY}) and a bare Celery worker calling it with requests")  # fmt: skip
    with fake_provider(LATENCY_S) as base_url:
        options = {"pool": PROFILE.pool, "concurrency": CONCURRENCY, "queues": list(PROFILE.queues)}
        stepper_worker = fleet(redis, 8, stepper_settings(base_url), name="bench-io", env={KEY_ENV: API_KEY}, **options)
        with (
            stepper_worker as (stepper_app, stepper_process),
            bare_io_worker(redis, 9, base_url) as (bare, bare_process),
        ):
            sides = {"stepper": _sender(stepper_app, "stepper.chat"), "bare": _sender(bare, "bare.chat")}
            pids = {"stepper": stepper_process.process.pid, "bare": bare_process.process.pid}
            for name, send in sides.items():
                throughput(send, f"warm-up {name}", WARM_UP)
            per_second: dict[str, list[float]] = {"stepper": [], "bare": []}
            cpu_ms: dict[str, list[float]] = {"stepper": [], "bare": []}
            for round_number in range(ROUNDS):
                # Alternate which side goes first, so a slow spell of the machine does not always hit the same one.
                order = list(sides) if round_number % 2 == 0 else list(reversed(sides))
                for name in order:
                    cpu_before = cpu_seconds(pids[name])
                    rate = throughput(sides[name], f"{name} round {round_number}", TASKS)
                    per_second[name].append(rate)
                    cpu_ms[name].append((cpu_seconds(pids[name]) - cpu_before) * 1000 / TASKS)
                    progress(f"io_fleet: round {round_number + 1}/{ROUNDS}, {name}: {TASKS} chats at "
                             f"{rate:.0f}/s ({rate / theoretical:.2f} of theoretical)")  # fmt: skip
    ratios = [s / b for s, b in zip(per_second["stepper"], per_second["bare"], strict=True)]
    ratio = statistics.median(ratios)
    stepper_median, bare_median = statistics.median(per_second["stepper"]), statistics.median(per_second["bare"])
    return {
        "io_fleet.throughput": compare(
            Figure(f"stepper.chat (live, fake {LATENCY_S * 1000:g} ms, llm profile)", stepper_median, "tasks/s"),
            Figure(f"bare.chat (requests, {PROFILE.pool} x{CONCURRENCY})", bare_median, "tasks/s"),
            f">= {TARGET}x at no more CPU per task (median ratio of {ROUNDS} alternated rounds: {_listed(ratios)})",
            ratio >= TARGET and statistics.median(cpu_ms["stepper"]) <= statistics.median(cpu_ms["bare"]),
            ratio=ratio,
            cpu_ms_per_task={name: round(statistics.median(values), 2) for name, values in cpu_ms.items()},
            theoretical_per_s=theoretical,
            fraction_of_theoretical={
                "stepper": round(stepper_median / theoretical, 2),
                "bare": round(bare_median / theoretical, 2),
            },
            rounds={name: [round(value, 1) for value in values] for name, values in per_second.items()},
        ),
    }


def _listed(ratios: list[float]) -> str:
    return ", ".join(f"{ratio:.2f}x" for ratio in ratios)


def _sender(app: Celery, task: str) -> Send:
    return lambda request: app.send_task(task, kwargs=request)
