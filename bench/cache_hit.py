"""Producer-side cache hit: ``stepper.submit`` answering a fresh cached chat at once, without the broker.

The baseline is the same request with ``cache="bypass"``: enqueued, computed by a worker (mock mode) and
awaited. The measuring runs in a subprocess (bench/cache_hit_probe.py), because ``stepper.submit`` reads its
Redis URL and mode from the environment when stepper is first imported. Target (cache issue): a hit's p50
under 0.5 ms, an absolute figure; the ratio to the round trip is context.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.harness import Figure, compare, progress, redis_url, run_probe
from tests.support.redis_server import RedisServer
from tests.support.workers import start_worker

HIT_P50_TARGET_MS = 0.5
MOCK = {"STEPPER_MODE": "mock"}


def run(redis: RedisServer) -> dict[str, dict[str, Any]]:
    url = redis_url(redis, 4)
    progress("cache_hit: starting a stepper worker (mock mode, threads x4)")
    with tempfile.TemporaryDirectory() as directory:
        worker = start_worker(url, Path(directory), {}, name="bench-cache", queues=["chat"], env=MOCK)
        try:
            progress("cache_hit: 2000 fresh hits through stepper.submit, then 200 cache='bypass' round trips")
            figures = run_probe("bench.cache_hit_probe", url, timeout_s=120, env=MOCK)
        finally:
            worker.stop()
    hit_ms = figures["hit_p50_ms"]
    return {
        "cache_hit": compare(
            Figure("submit() fresh hit p50", hit_ms, "ms"),
            Figure("cache='bypass' enqueue-and-wait p50", figures["round_trip_p50_ms"], "ms"),
            f"hit p50 < {HIT_P50_TARGET_MS:g} ms",
            hit_ms < HIT_P50_TARGET_MS,
            hit_p90_ms=round(figures["hit_p90_ms"], 3),
            round_trip_p90_ms=round(figures["round_trip_p90_ms"], 3),
        )
    }
