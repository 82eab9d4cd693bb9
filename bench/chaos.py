"""``make chaos``: many trials of the broker fault scenarios, with the figures a reliability claim needs.

Every scenario (a clean broker restart, a crash, every connection reset while the broker stays up) runs on
Redis and RabbitMQ (``CHAOS_BROKERS=redis,rabbitmq``), on the threads and prefork pools, several faults per
trial under a backlog, through real servers and workers.
Each task is counted at the provider's journal: lost, run more than once, published again after being lost in
flight (recovered), and how often a worker had to be restarted (its watchdog found it stopped consuming) or
stayed stalled with work waiting. ``CHAOS_TRIALS`` and ``CHAOS_TASKS``
change the size (defaults: 5 trials of 1,000 tasks with 3 faults each).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from tests.support.chaos import BROKERS, FAULTS, Outcome, run


def main() -> int:
    trials = int(os.environ.get("CHAOS_TRIALS", "5"))
    tasks = int(os.environ.get("CHAOS_TASKS", "1000"))
    faults = int(os.environ.get("CHAOS_FAULTS", "3"))
    brokers = os.environ.get("CHAOS_BROKERS", ",".join(BROKERS)).split(",")
    rows: list[tuple[str, str, str, list[Outcome]]] = []
    for broker in brokers:
        for fault in sorted(FAULTS):
            for pool in ("threads", "prefork"):
                outcomes = []
                for trial in range(1, trials + 1):
                    print(f"chaos: {fault} of {broker} on {pool}, trial {trial}/{trials} ({tasks} tasks, {faults} "
                          "faults)...", file=sys.stderr, flush=True)  # fmt: skip
                    with tempfile.TemporaryDirectory(prefix="stepper-chaos-") as directory:
                        outcome = run(fault, pool, tasks, faults, Path(directory), broker=broker)
                    print(f"chaos:   {outcome}", file=sys.stderr, flush=True)
                    outcomes.append(outcome)
                rows.append((broker, fault, pool, outcomes))
    print(f"\n{trials} trials x {tasks} tasks, {faults} faults each")
    header = f"{'broker':<9} {'fault':<12} {'pool':<8} {'lost':>5} {'recovered':>10} {'duplicated':>11}"
    print(f"{header} {'restarts':>9} {'stalled':>8}")
    for broker, fault, pool, outcomes in rows:
        lost = sum(o.lost for o in outcomes)
        duplicated = sum(o.duplicated for o in outcomes)
        restarts = sum(o.restarts for o in outcomes)
        stalled = sum(o.stalled for o in outcomes)
        recovered = sum(o.recovered for o in outcomes)
        print(
            f"{broker:<9} {fault:<12} {pool:<8} {lost:>5} {recovered:>10} {duplicated:>11} {restarts:>9} {stalled:>8}"
        )
    return 1 if any(o.lost or o.stalled for *_, outcomes in rows for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
