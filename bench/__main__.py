"""Run every benchmark, print ratios with absolute figures for context, write bench-results.json."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

from bench import ocr
from bench.harness import private_redis

RESULTS = Path("bench-results.json")


def main() -> int:
    print(f"stepper benchmarks on {platform.machine()}, {os.cpu_count()} cores (timings are noisy; ratios hold)")
    results = {}
    with private_redis() as redis:
        for name, module in (("ocr", ocr),):
            results[name] = module.run(redis)
            figures = results[name]
            verdict = "meets" if figures["met"] else "MISSES"
            print(
                f"{name:>5}: {figures['candidate']['name']} {figures['candidate']['per_second']}/s vs "
                f"{figures['baseline']['name']} {figures['baseline']['per_second']}/s = {figures['ratio']}x "
                f"({verdict} target {figures['target']}x)"
            )
    RESULTS.write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": results}, indent=2))
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
