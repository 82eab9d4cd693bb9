"""What a Redis Sentinel failover loses: the master is SIGKILLed while a producer keeps publishing.

Each trial starts one master, one replica and three sentinels (tests.support.sentinel) and a supervised worker,
all on loopback; a producer thread publishes chats as fast as it can (broker, results and state through one
``sentinel://`` URL) and the master is killed mid-stream. Counted: the replica's lag behind the master at the
kill (an upper bound: the replica is read first), the publishes accepted, those that raised (the caller knows:
nothing to lose), the accepted tasks that never finished (lost: what the replica had not received, with the
journal entry that would have brought it back), those run twice, and worker restarts. Not a pass/fail figure:
``python -m bench.failover`` (``FAILOVER_TRIALS``, default 3) prints them for README, "Which broker when".
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.integration.conftest import producer_app
from tests.support.chaos import Supervisor
from tests.support.providers import journal, journal_settings
from tests.support.sentinel import SentinelGroup

#: Seconds of publishing before the kill.
BEFORE_S = 2.0
#: Seconds to wait for every accepted task to finish after the failover.
DRAIN_S = 90.0


def trial(directory: Path) -> dict[str, Any]:
    group = SentinelGroup(shutil.which("redis-server") or "redis-server", directory / "sentinel")
    group.directory.mkdir(parents=True)
    group.start()
    path = directory / "journal"
    settings = journal_settings(path, 0.0, {"lease_s": 3.0, "inflight_grace_s": 6.0})
    # Restarts a worker that exits (its watchdog: it stopped consuming), as stepper fleet up or Kubernetes would.
    supervisor = Supervisor(group.url, directory, settings, "failover", "threads", {})
    accepted: list[str] = []
    refused = [0]
    stop = threading.Event()

    def publish() -> None:
        app = producer_app(group.url)
        number = 0
        while not stop.is_set():
            content = f"job {number}"
            number += 1
            try:
                app.send_task("stepper.chat", kwargs={"messages": [{"role": "user", "content": content}]})
            except Exception:  # noqa: BLE001  (refused while the master is gone: the caller is told)
                refused[0] += 1
                time.sleep(0.05)
            else:
                accepted.append(content)

    producer = threading.Thread(target=publish, daemon=True)
    try:
        producer.start()
        time.sleep(BEFORE_S)
        lag_bytes = group.replication_lag_bytes()
        accepted_at_kill = len(accepted)
        group.kill_master()
        failover_s = group.wait_for_failover()
        time.sleep(1.0)
        stop.set()
        producer.join(timeout=30)
        expected = set(accepted)
        supervisor.wait_for(lambda: expected <= set(journal(path, "finish")), DRAIN_S)
        finished = set(journal(path, "finish"))
        return {
            "lag_bytes_at_kill": lag_bytes,
            "failover_s": round(failover_s, 1),
            "accepted": len(accepted),
            "accepted_at_kill": accepted_at_kill,
            "refused": refused[0],
            "lost": len(expected - finished),
            "run_twice": len(journal(path, "finish")) - len(finished),
            "worker_restarts": len(supervisor.workers) - 1,
        }
    finally:
        stop.set()
        supervisor.stop()
        group.stop()


def main() -> int:
    trials = int(os.environ.get("FAILOVER_TRIALS", "3"))
    for number in range(1, trials + 1):
        with tempfile.TemporaryDirectory(prefix="stepper-failover-") as directory:
            print(f"trial {number}/{trials}: {trial(Path(directory))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
