"""``stepper fleet up``: one worker per profile on this machine, stopped gracefully together.

Ctrl-C or SIGTERM is passed to every worker as SIGTERM, Celery's warm shutdown: tasks in flight finish
(and with late acknowledgement, any that cannot are redelivered), then the workers exit. A worker that dies
on its own stops the fleet, so a supervisor (systemd, Kubernetes) sees it and restarts the whole.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from stepper.workers.profiles import Profile

POLL_S = 0.5


def run_fleet(profiles: Sequence[Profile], loglevel: str = "INFO", shutdown_timeout_s: float = 300.0) -> int:
    """Start the profiles' workers and supervise them until a signal or a death; the exit status."""
    # Own sessions: a terminal's Ctrl-C reaches only this supervisor, which sends each worker exactly one
    # SIGTERM (a second signal would turn Celery's warm shutdown into a cold one).
    workers = {
        profile.name: subprocess.Popen(profile.worker_argv(loglevel), start_new_session=True)  # noqa: S603
        for profile in profiles
    }
    for name, process in workers.items():
        print(f"stepper fleet: {name} worker started (pid {process.pid})", file=sys.stderr, flush=True)
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            print(f"stepper fleet: {signal.Signals(signum).name}: warm shutdown, finishing tasks in flight",
                  file=sys.stderr, flush=True)  # fmt: skip
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        while not stopping:
            died = [name for name, process in workers.items() if process.poll() is not None]
            if died:
                print(f"stepper fleet: {', '.join(died)} worker exited; stopping the others",
                      file=sys.stderr, flush=True)  # fmt: skip
                status = 1
                break
            time.sleep(POLL_S)
    finally:
        for process in workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + shutdown_timeout_s
        for name, process in workers.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"stepper fleet: {name} did not stop in time; killing it", file=sys.stderr, flush=True)
                process.kill()
                process.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stepper fleet: stopped", file=sys.stderr, flush=True)
    return status
