"""Run every benchmark, print ratios with absolute figures for context, write bench-results.json.

``python -m bench io_fleet concurrency`` runs only the benchmarks named (their modules' names), in the usual order,
and prints them without writing the file, which keeps the last full run's figures (``make bench``).
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> int:
    names = [module.__name__.removeprefix("bench.") for module in BENCHMARKS]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("only", nargs="*", metavar="BENCHMARK", help=f"one of {', '.join(names)} (default: all)")
    only = parser.parse_args(argv).only
    if unknown := sorted(set(only) - set(names)):
        parser.error(f"no benchmark {', '.join(unknown)}: choose among {', '.join(names)}")
    print(f"stepper benchmarks on {platform.machine()}, {os.cpu_count()} cores (timings are noisy; ratios hold)")
    results: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    with private_redis() as redis:
        for name, module in zip(names, BENCHMARKS, strict=True):
            if only and name not in only:
                continue
            for result, figures in module.run(redis).items():
                results[result] = figures
                print(line(result, figures), flush=True)
    if only:
        print(f"done after {time.monotonic() - started:.0f}s; only a full run writes {RESULTS}")
        return 0
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
