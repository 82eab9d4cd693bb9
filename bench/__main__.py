"""Run every benchmark, print ratios with absolute figures for context, write bench-results.json."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench import (
    brokers,
    cache_hit,
    concurrency,
    io_fleet,
    memory,
    ocr,
    ocr_quality,
    overhead,
    publish,
    stream_latency,
    stream_scale,
)
from bench.harness import private_redis

RESULTS = Path("bench-results.json")
#: Each module's ``run(redis)`` returns its results by name, in the shape of ``bench.harness.compare``.
BENCHMARKS = (
    ocr,
    ocr_quality,
    overhead,
    io_fleet,
    concurrency,
    stream_latency,
    stream_scale,
    publish,
    cache_hit,
    memory,
    brokers,
)


def main() -> int:
    print(f"stepper benchmarks on {platform.machine()}, {os.cpu_count()} cores (timings are noisy; ratios hold)")
    results: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    with private_redis() as redis:
        for module in BENCHMARKS:
            for name, figures in module.run(redis).items():
                results[name] = figures
                print(line(name, figures), flush=True)
    RESULTS.write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": results}, indent=2))
    print(f"written to {RESULTS} after {time.monotonic() - started:.0f}s")
    return 0


def line(name: str, figures: dict[str, Any]) -> str:
    """``name: candidate vs baseline = ratio (meets|MISSES target ...)``."""
    candidate, baseline = figures["candidate"], figures["baseline"]
    verdict = "meets" if figures["met"] else "MISSES"
    return (
        f"{name:>19}: {candidate['name']} {candidate['value']:g} {candidate['unit']} vs "
        f"{baseline['name']} {baseline['value']:g} {baseline['unit']} = {figures['ratio']}x "
        f"({verdict} target {figures['target']})"
    )


if __name__ == "__main__":
    sys.exit(main())
