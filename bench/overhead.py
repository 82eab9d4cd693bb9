"""Orchestration overhead: ``stepper.chat`` in mock mode through the whole guard stack, against bare Celery.

stepper's side takes the realistic path of a chat task: validation, a cache lookup that misses (every request
is different, at temperature 0 so it is cacheable), single-flight, breaker admission and a rate-limit token
taken by the Lua script (limits far too high ever to wait), pybreaker, the mock provider, output validation,
the cache write, metrics and hooks. The baseline is ``bare.echo`` (bench/bare_app.py), a task that returns
its keyword arguments. Same Redis, same threads pool and concurrency, same serializer, acks and prefetch.

The two run alternately, ``ROUNDS`` times, and the median of each round's ratio is reported: the machine is
noisy and a drift hits both sides. Each worker's CPU per task (milliseconds, from /proc, over the bursts) is
reported beside it: on 2 cores the worker's one interpreter bounds the burst, so that figure explains the ratio.
Targets (orchestration issue): throughput at least 0.9x bare Celery, and a sequential round trip (p50) at most
1 ms longer.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from celery import Celery

from bench import bare_app
from bench.harness import Figure, bare_worker, compare, cpu_seconds, fleet, percentile, progress, timed
from stepper.config import CELERY_DEFAULTS
from tests.support.redis_server import RedisServer

TASKS = 1500
SEQUENTIAL = 200
WARM_UP = 50
ROUNDS = 5
CONCURRENCY = 4
THROUGHPUT_TARGET = 0.9
EXTRA_P50_TARGET_MS = 1.0

#: Mock mode, with rate limits the Lua script enforces but that never make a call wait.
STEPPER_SETTINGS = {
    "stepper_mode": "mock",
    "stepper_providers": {
        "mock": {"class": "stepper.providers.mock:MockProvider", "rpm": 10_000_000, "tpm": 10_000_000_000},
    },
}

Send = Callable[[dict[str, Any]], Any]


def chat_request(label: str, index: int) -> dict[str, Any]:
    """Deterministic and different for every (label, index): cacheable, and never in the cache yet."""
    return {"messages": [{"role": "user", "content": f"overhead {label} #{index}: hello"}], "temperature": 0}


def throughput(send: Send, label: str) -> float:
    """Tasks per second: ``TASKS`` submitted, then every result awaited."""

    def submit_and_wait() -> None:
        pending = [send(chat_request(label, index)) for index in range(TASKS)]
        for result in pending:
            result.get(timeout=120)

    return timed(label, TASKS, submit_and_wait).per_second


def round_trip_p50_ms(send: Send, label: str) -> float:
    """The median of ``SEQUENTIAL`` send-and-get round trips, one task in flight at a time."""
    samples = []
    for index in range(SEQUENTIAL):
        request = chat_request(label, index)
        started = time.perf_counter()
        send(request).get(timeout=30)
        samples.append((time.perf_counter() - started) * 1000)
    return percentile(samples, 0.5)


def run(redis: RedisServer) -> dict[str, dict[str, Any]]:
    drifted = {key: value for key, value in bare_app.RELIABILITY.items() if CELERY_DEFAULTS[key] != value}
    if drifted:
        raise SystemExit(f"bench/bare_app.py no longer has stepper's settings for {', '.join(drifted)}: update it")
    options = {"pool": "threads", "concurrency": CONCURRENCY}
    progress(f"overhead: starting a stepper worker (mock chat, threads x{CONCURRENCY}) and a bare Celery worker")
    with (
        fleet(redis, 2, STEPPER_SETTINGS, name="bench-overhead", queues=["chat"], **options) as (stepper_app, stepper),
        bare_worker(redis, 3, name="bench-bare", **options) as (bare, bare_process),
    ):
        sides = {"stepper": _sender(stepper_app, "stepper.chat"), "bare": _sender(bare, "bare.echo")}
        pids = {"stepper": stepper.process.pid, "bare": bare_process.process.pid}
        for name, send in sides.items():
            for result in [send(chat_request(f"warm-up {name}", index)) for index in range(WARM_UP)]:
                result.get(timeout=60)
        per_second: dict[str, list[float]] = {"stepper": [], "bare": []}
        p50_ms: dict[str, list[float]] = {"stepper": [], "bare": []}
        cpu_ms: dict[str, list[float]] = {"stepper": [], "bare": []}
        for round_number in range(ROUNDS):
            # Alternate which side goes first, so a slow spell of the machine does not always hit the same one.
            order = list(sides) if round_number % 2 == 0 else list(reversed(sides))
            for name in order:
                progress(
                    f"overhead: round {round_number + 1}/{ROUNDS}, {name}: {TASKS} tasks, then {SEQUENTIAL} one by one"
                )
                label = f"{name} round {round_number}"
                cpu_before = cpu_seconds(pids[name])
                per_second[name].append(throughput(sides[name], f"{label} burst"))
                cpu_ms[name].append((cpu_seconds(pids[name]) - cpu_before) * 1000 / TASKS)
                p50_ms[name].append(round_trip_p50_ms(sides[name], f"{label} sequential"))
    ratios = [s / b for s, b in zip(per_second["stepper"], per_second["bare"], strict=True)]
    extra_ms = [s - b for s, b in zip(p50_ms["stepper"], p50_ms["bare"], strict=True)]
    ratio, extra = statistics.median(ratios), statistics.median(extra_ms)
    return {
        "overhead.throughput": compare(
            Figure("stepper.chat (mock, guards, cache miss)", statistics.median(per_second["stepper"]), "tasks/s"),
            Figure("bare.echo", statistics.median(per_second["bare"]), "tasks/s"),
            f">= {THROUGHPUT_TARGET}x (median ratio of {ROUNDS} alternated rounds: {_listed(ratios, 'x')})",
            ratio >= THROUGHPUT_TARGET,
            ratio=ratio,
            cpu_ms_per_task={name: round(statistics.median(values), 3) for name, values in cpu_ms.items()},
            rounds={name: [round(value, 1) for value in values] for name, values in per_second.items()},
        ),
        "overhead.round_trip": compare(
            Figure("stepper.chat p50", statistics.median(p50_ms["stepper"]), "ms"),
            Figure("bare.echo p50", statistics.median(p50_ms["bare"]), "ms"),
            f"<= bare + {EXTRA_P50_TARGET_MS:g} ms (median extra of {ROUNDS} rounds: {_listed(extra_ms, ' ms')})",
            extra <= EXTRA_P50_TARGET_MS,
            median_extra_ms=round(extra, 3),
            rounds={name: [round(value, 3) for value in values] for name, values in p50_ms.items()},
        ),
    }


def _sender(app: Celery, task: str) -> Send:
    return lambda request: app.send_task(task, kwargs=request)


def _listed(values: list[float], unit: str) -> str:
    return ", ".join(f"{value:.2f}{unit}" for value in values)
