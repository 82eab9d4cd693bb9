"""The alert state's twin in one process's memory: :mod:`stepper.ops.alerts` without a Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from stepper.ops.alerts import EXHAUSTED_TTL_S, minute_of


@dataclass
class _Baseline:
    count: int
    at: float
    growth: int


class MemoryAlertStore:
    """An :class:`~stepper.ops.alerts.AlertStore` in this process's memory, with the Redis store's semantics.

    One lock makes each method atomic, as ``HSETNX``, ``HDEL`` and the Lua baseline are in Redis, so checkers on
    threads share it safely. A minute's ChainExhausted counter runs out EXHAUSTED_TTL_S seconds after its last
    count, read on ``clock``. Not shared between processes.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._firing: dict[str, str] = {}
        self._baseline: _Baseline | None = None
        self._exhausted: dict[int, tuple[int, float]] = {}  # minute -> (count, expires at, on clock)

    def take(self, key: str, record: str) -> bool:
        with self._lock:
            if key in self._firing:
                return False
            self._firing[key] = record
            return True

    def firing(self) -> dict[str, str]:
        with self._lock:
            return dict(self._firing)

    def clear(self, key: str) -> bool:
        with self._lock:
            return self._firing.pop(key, None) is not None

    def dead_letter_growth(self, count: int, now: float, min_age_s: float) -> int:
        """As ``alerts_dead_letter_growth.lua``: the baseline moves only once it is ``min_age_s`` old."""
        with self._lock:
            baseline = self._baseline
            if baseline is not None and now - baseline.at < min_age_s:
                return baseline.growth
            growth = 0 if baseline is None else count - baseline.count
            self._baseline = _Baseline(count, now, growth)
            return growth

    def add_exhausted(self, now: float) -> None:
        with self._lock:
            minute = minute_of(now)
            self._exhausted[minute] = (self._count(minute) + 1, self.clock() + EXHAUSTED_TTL_S)

    def exhausted(self, minute: int) -> int:
        with self._lock:
            return self._count(minute)

    def _count(self, minute: int) -> int:
        """Under the lock: the minute's count, dropped once it has run out."""
        count, expires_at = self._exhausted.get(minute, (0, float("inf")))
        if expires_at <= self.clock():
            del self._exhausted[minute]
            return 0
        return count
