"""Worker profiles: which queues a worker consumes, with which pool, at what concurrency.

LLM work waits on HTTP, so its workers use threads and high concurrency (the threads pool ignores Celery's
time limits: the providers' own HTTP timeouts bound each call). OCR, OpenCV and speech use the CPU, so their
workers fork one process per core with a memory ceiling. Ops work (webhook deliveries, and the
workflows' own tasks: recording pieces, assembling guides) is small and mostly I/O-bound.
Plain ``celery -A stepper worker`` still consumes every queue.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from stepper.errors import ConfigError


@dataclass(frozen=True)
class Profile:
    name: str
    queues: tuple[str, ...]
    pool: str
    #: None: one per core.
    concurrency: int | None
    #: Prefork only: a child using more resident memory (KiB) is replaced after its task.
    max_memory_per_child_kib: int | None = None

    def worker_argv(self, loglevel: str = "INFO", hostname: str | None = None) -> list[str]:
        """The ``celery worker`` command line for this profile."""
        concurrency = self.concurrency or os.cpu_count() or 1
        argv = [
            sys.executable, "-m", "celery", "-A", "stepper", "worker",
            "--queues", ",".join(self.queues),
            "--pool", self.pool,
            "--concurrency", str(concurrency),
            "--hostname", hostname or f"{self.name}@%h",
            "--loglevel", loglevel,
        ]  # fmt: skip
        if self.max_memory_per_child_kib:
            argv += ["--max-memory-per-child", str(self.max_memory_per_child_kib)]
        return argv


PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in (
        Profile("llm", ("report", "chat"), "threads", 32),
        Profile("cpu", ("ocr", "steps", "vision", "speech"), "prefork", None, max_memory_per_child_kib=512_000),
        Profile("ops", ("callbacks", "workflows"), "threads", 8),
    )
}


def consumed_queues(app: Any) -> list[str]:
    """The names of the queues ``app``'s worker consumes (``--queues``; every queue without it), sorted."""
    queues = app.amqp.queues
    return sorted(queues.consume_from or queues)


def profile_named(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"no worker profile {name!r}; profiles are {', '.join(PROFILES)}") from None
