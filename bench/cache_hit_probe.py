"""The measuring half of bench/cache_hit.py, run in its own process: ``python -m bench.cache_hit_probe``.

``stepper.submit`` uses the module-level app and settings, read from the environment when stepper is first
imported; the parent sets ``STEPPER_REDIS_URL``, ``STEPPER_MODE`` and ``CELERY_CONFIG_MODULE`` before this
process starts. Prints one JSON object of figures on stdout.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

HITS = 2000
ROUND_TRIPS = 200
REQUEST: dict[str, Any] = {"messages": [{"role": "user", "content": "cache hit benchmark: hello"}], "temperature": 0}


def main() -> int:
    from celery.result import EagerResult

    from bench.harness import percentile
    from stepper import submit

    first = submit("chat", REQUEST)
    if isinstance(first, EagerResult):
        raise SystemExit("the first submission was already cached: the probe needs an empty cache")
    first.get(timeout=60)  # computed by a worker, which stores it in the cache

    hit_ms = []
    for _ in range(HITS):
        started = time.perf_counter()
        hit = submit("chat", REQUEST)
        result = hit.get()
        hit_ms.append((time.perf_counter() - started) * 1000)
        if not (isinstance(hit, EagerResult) and result["cached"]):
            raise SystemExit(f"expected a fresh cache hit, got {type(hit).__name__}: {result}")

    bypass = {**REQUEST, "cache": "bypass"}
    round_trip_ms = []
    for _ in range(ROUND_TRIPS):
        started = time.perf_counter()
        pending = submit("chat", bypass)
        pending.get(timeout=30)
        round_trip_ms.append((time.perf_counter() - started) * 1000)
        if isinstance(pending, EagerResult):
            raise SystemExit("cache='bypass' came back from the cache")

    figures = {
        "hits": HITS,
        "hit_p50_ms": percentile(hit_ms, 0.5),
        "hit_p90_ms": percentile(hit_ms, 0.9),
        "round_trips": ROUND_TRIPS,
        "round_trip_p50_ms": percentile(round_trip_ms, 0.5),
        "round_trip_p90_ms": percentile(round_trip_ms, 0.9),
    }
    json.dump(figures, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
