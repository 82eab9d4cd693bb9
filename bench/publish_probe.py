"""The measuring half of bench/publish.py, run in its own process: ``python -m bench.publish_probe``.

stepper's producer reads its Redis URL from the environment when stepper is first imported, so the parent
sets ``STEPPER_REDIS_URL`` and ``CELERY_CONFIG_MODULE`` first. No worker consumes the queue: what is timed
is publishing alone. ``submit_many`` would wait for results after sending, so the submit it is given stops
it the way Ctrl-C would, right after the last message is sent; the clock stops there. Each side's messages
are counted in Redis and cleared before the next round. Prints one JSON object of figures on stdout.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

JOBS = 2000
ROUNDS = 3
QUEUE = "chat"


def jobs() -> list[Any]:
    """``JOBS`` valid chat jobs, distinct and without a temperature (so nothing is looked up in the cache)."""
    from stepper.batch import Job

    return [
        Job(id=f"job-{index}", kind="chat", args={"messages": [{"role": "user", "content": f"publish #{index}"}]})
        for index in range(JOBS)
    ]


def stepper_seconds(batch: list[Any], out: Path) -> float:
    """``submit_many`` with a window of every job, until the last message is sent."""
    from stepper.batch import submit_many
    from stepper.producer import submit

    sent: list[float] = []

    def submit_then_stop_after_the_last(*args: Any, **kwargs: Any) -> Any:
        result = submit(*args, **kwargs)
        if len(sent) == len(batch) - 1:
            sent.append(time.perf_counter())
            raise KeyboardInterrupt  # submit_many stops as at Ctrl-C, instead of waiting for results
        sent.append(time.perf_counter())
        return result

    started = time.perf_counter()
    summary = submit_many(batch, out, window=len(batch), submit=submit_then_stop_after_the_last)
    if not summary.interrupted or len(sent) != len(batch):
        raise SystemExit(f"submit_many sent {len(sent)} of {len(batch)} jobs: {summary}")
    return sent[-1] - started


def celery_seconds(batch: list[Any]) -> float:
    """Plain ``apply_async`` of the same kwargs, priority and correlation header on the same app, in a loop."""
    from stepper import tasks
    from stepper.infra.logs import CORRELATION_HEADER

    started = time.perf_counter()
    for job in batch:
        tasks.chat.apply_async(kwargs=job.args, priority=job.priority, headers={CORRELATION_HEADER: job.id})
    return time.perf_counter() - started


def queued_messages() -> int:
    """Messages waiting in the chat queue, over every priority list."""
    from stepper.infra.connections import state_redis

    client = state_redis()
    return sum(int(client.llen(key)) for key in client.scan_iter(f"{QUEUE}*") if client.type(key) == b"list")


def main() -> int:
    from stepper.infra.connections import state_redis

    batch = jobs()
    seconds: dict[str, list[float]] = {"submit_many": [], "apply_async": []}
    with tempfile.TemporaryDirectory() as directory:
        for round_number in range(ROUNDS + 1):  # round 0 warms up connections and imports
            order = ["submit_many", "apply_async"] if round_number % 2 else ["apply_async", "submit_many"]
            for side in order:
                state_redis().flushdb()
                if side == "submit_many":
                    elapsed = stepper_seconds(batch, Path(directory) / f"results-{round_number}.jsonl")
                else:
                    elapsed = celery_seconds(batch)
                if (queued := queued_messages()) != len(batch):
                    raise SystemExit(f"{side} left {queued} messages in Redis, not {len(batch)}")
                if round_number:
                    seconds[side].append(elapsed)
    json.dump({"jobs": JOBS, "seconds": seconds}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
