"""Batch publishing: ``stepper.batch.submit_many`` sending valid jobs, against plain Celery ``apply_async``.

No worker runs, so only the cost of publishing is measured: ``submit_many`` (window of every job, each job
through ``stepper.submit``: validation, priority, correlation header) until its last message is sent,
against a loop of ``apply_async`` with the same kwargs, priority and header on the same app and queue.
Both run in bench/publish_probe.py, in its own process (the producer reads its settings from the
environment), for ``ROUNDS`` alternated rounds; the median ratio of rates is reported. Target (batch
issue): not slower than plain Celery, read as at least 0.9x with this machine's noise.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.harness import Figure, compare, progress, redis_url, run_probe
from tests.support.redis_server import RedisServer

TARGET = 0.9


def run(redis: RedisServer) -> dict[str, dict[str, Any]]:
    progress("publish: submit_many and apply_async loops of the same jobs, alternated, no worker running")
    figures = run_probe("bench.publish_probe", redis_url(redis, 10), timeout_s=600)
    jobs, seconds = figures["jobs"], figures["seconds"]
    rates = {side: [jobs / elapsed for elapsed in values] for side, values in seconds.items()}
    ratios = [s / c for s, c in zip(rates["submit_many"], rates["apply_async"], strict=True)]
    ratio = statistics.median(ratios)
    return {
        "publish": compare(
            Figure(f"submit_many of {jobs} chat jobs", statistics.median(rates["submit_many"]), "jobs/s"),
            Figure("apply_async loop, same messages", statistics.median(rates["apply_async"]), "jobs/s"),
            f">= {TARGET}x (median ratio of {len(ratios)} alternated rounds: {', '.join(f'{r:.2f}x' for r in ratios)})",
            ratio >= TARGET,
            ratio=ratio,
            rounds={side: [round(rate, 1) for rate in values] for side, values in rates.items()},
        )
    }
