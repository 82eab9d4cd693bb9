"""``stepper fleet up``: one worker per profile on this machine, restarted when it exits, stopped together.

Ctrl-C or SIGTERM is passed to every worker as SIGTERM, Celery's warm shutdown: tasks in flight finish
(and with late acknowledgement, any that cannot are redelivered), then the workers exit. A worker that exits
on its own (a crash, or its watchdog finding it stopped consuming) is started again, after a pause that
doubles while it keeps dying young (1 s up to 60 s); one that exits with status 78 (EX_CONFIG: its settings
or its Redis cannot work) is not, and stops the fleet with status 1: restarting would only repeat it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

from stepper.workers.profiles import Profile

POLL_S = 0.5
#: Exit status of a worker that cannot work as configured (sysexits' EX_CONFIG): never restarted.
EXIT_CONFIG = 78
#: A worker that ran this long before exiting is restarted at once; a younger one after a growing pause.
STABLE_AFTER_S = 60.0
FIRST_PAUSE_S = 1.0
LONGEST_PAUSE_S = 60.0


@dataclass
class Supervised:
    profile: Profile
    loglevel: str
    process: subprocess.Popen[bytes] = field(init=False)
    started_at: float = 0.0
    pause_s: float = FIRST_PAUSE_S
    restart_at: float | None = None

    def start(self) -> None:
        # Own session: a terminal's Ctrl-C reaches only the supervisor, which sends each worker exactly one
        # SIGTERM (a second signal would turn Celery's warm shutdown into a cold one).
        self.process = subprocess.Popen(self.profile.worker_argv(self.loglevel), start_new_session=True)  # noqa: S603
        self.started_at = time.monotonic()
        self.restart_at = None
        _say(f"{self.profile.name} worker started (pid {self.process.pid})")

    def exited(self, now: float) -> int | None:
        """The exit status, once (later calls return None until it is restarted)."""
        if self.restart_at is not None or self.process.poll() is None:
            return None
        if now - self.started_at < STABLE_AFTER_S:  # dying young: wait, and longer each time
            self.restart_at = now + self.pause_s
            self.pause_s = min(LONGEST_PAUSE_S, self.pause_s * 2)
        else:
            self.restart_at = now
            self.pause_s = FIRST_PAUSE_S
        return self.process.returncode


def run_fleet(profiles: Sequence[Profile], loglevel: str = "INFO", shutdown_timeout_s: float = 300.0) -> int:
    """Start the profiles' workers and supervise them until a signal (status 0) or a configuration error
    (status 1)."""
    workers = [Supervised(profile, loglevel) for profile in profiles]
    for worker in workers:
        worker.start()
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            _say(f"{signal.Signals(signum).name}: warm shutdown, finishing tasks in flight")
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        while not stopping:
            now = time.monotonic()
            for worker in workers:
                code = worker.exited(now)
                if code == EXIT_CONFIG:
                    _say(f"{worker.profile.name} worker cannot run as configured (exit {code}; its log says why)")
                    status, stopping = 1, True
                elif code is not None:
                    pause_s = max(0.0, (worker.restart_at or now) - now)
                    _say(f"{worker.profile.name} worker exited (status {code}); restarting it in {pause_s:g}s")
                elif worker.restart_at is not None and now >= worker.restart_at and not stopping:
                    worker.start()
            time.sleep(POLL_S)
    finally:
        _stop_all(workers, shutdown_timeout_s)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _say("stopped")
    return status


def _stop_all(workers: list[Supervised], timeout_s: float) -> None:
    running = [worker for worker in workers if worker.process.poll() is None]
    for worker in running:
        worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for worker in running:
        try:
            worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _say(f"{worker.profile.name} did not stop in time; killing it")
            worker.process.kill()
            worker.process.wait()


def _say(message: str) -> None:
    print(f"stepper fleet: {message}", file=sys.stderr, flush=True)
