"""The dead-letter store's twin in one process's memory: :mod:`stepper.ops.deadletters` without a Redis."""

from __future__ import annotations

import builtins
import itertools
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from stepper.ops.deadletters import (
    _EXPIRED_PER_ADD,
    Entry,
    _candidate_id,
    _entry,
    _found,
    _replay_record,
    _stored,
)
from stepper.settings import DeadLetterSettings


class MemoryDeadLetterStore:
    """Dead letters in this process's memory, with the Redis store's semantics, times read from ``clock``.

    Like the Redis store, an add drops what is older than ``ttl_s`` and the oldest beyond ``max_entries``, and the
    whole store is gone once a TTL (and a second) passes without an add. Not shared between processes.
    """

    def __init__(self, settings: DeadLetterSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self._entries: dict[str, str] = {}  # entry id -> the failure as JSON, as Redis keeps it
        self._failed_ms: dict[str, int] = {}  # entry id -> failure time (ms), Redis's index
        self._by_task: dict[str, str] = {}
        self._replays: dict[str, builtins.list[dict[str, str]]] = {}
        self._expires_ms: int | None = None

    def add(  # noqa: PLR0917  (one failure record, field by field)
        self,
        task_id: str,
        kind: str,
        request: Mapping[str, Any],
        error_type: str,
        error_message: str,
        attempts: Sequence[Mapping[str, Any]],
        retries: int,
    ) -> str:
        """Store one failure (its request redacted) and return its entry id; the same task id keeps one entry.

        The same call drops entries older than ``ttl_s`` and the oldest beyond ``max_entries``.
        """
        self._expire()
        now = self.clock()
        now_ms = int(now * 1000)
        entry_id = self._by_task.get(task_id)
        if entry_id is None or entry_id not in self._entries:
            entry_id = candidate = _candidate_id(now_ms, task_id)
            for n in itertools.count(1):
                if entry_id not in self._entries:
                    break
                entry_id = f"{candidate}-{n}"
            self._by_task[task_id] = entry_id
        self._entries[entry_id] = _stored(task_id, kind, request, error_type, error_message, attempts, retries, now)
        self._failed_ms[entry_id] = now_ms
        ttl_ms = int(self.settings.ttl_s * 1000)
        oldest_first = self._ids(oldest_first=True)
        expired = [id_ for id_ in oldest_first if self._failed_ms[id_] < now_ms - ttl_ms][:_EXPIRED_PER_ADD]
        for id_ in expired:
            self._drop(id_)
        excess = len(self._failed_ms) - self.settings.max_entries
        if excess > 0:
            for id_ in self._ids(oldest_first=True)[:excess]:
                self._drop(id_)
        self._expires_ms = now_ms + ttl_ms + 1000
        return entry_id

    def get(self, entry_id: str) -> Entry | None:
        self._expire()
        raw = self._entries.get(entry_id)
        return None if raw is None else _entry(entry_id, raw, json.dumps(self._replays.get(entry_id, [])))

    def require(self, entry_id: str) -> Entry:
        """The entry, or InvalidRequest saying how to find the right id."""
        return _found(self.get(entry_id), entry_id)

    def list(self, limit: int = 50, kind: str | None = None) -> builtins.list[Entry]:
        """The newest ``limit`` entries (of ``kind``, when given), newest first."""
        return [] if limit <= 0 else builtins.list(itertools.islice(self.entries(kind), limit))

    def entries(self, kind: str | None = None, *, oldest_first: bool = False, page: int = 200) -> Iterator[Entry]:
        """Every entry (of ``kind``), newest first unless ``oldest_first``; ids read once, removed ones skipped."""
        self._expire()
        for entry_id in self._ids(oldest_first=oldest_first):
            entry = self.get(entry_id)
            if entry is not None and (kind is None or entry.kind == kind):
                yield entry

    def remove(self, entry_id: str) -> bool:
        """Remove one entry; False when there was none."""
        self._expire()
        return self._drop(entry_id)

    def purge(self) -> int:
        """Remove every entry; return how many there were."""
        self._expire()
        count = len(self._entries)
        for held in (self._entries, self._failed_ms, self._by_task, self._replays):
            held.clear()
        return count

    def size(self) -> int:
        self._expire()
        return len(self._failed_ms)

    def record_replay(self, entry_id: str, new_task_id: str) -> bool:
        """Link the entry to the task that resubmitted it; False when the entry is gone."""
        self._expire()
        if entry_id not in self._entries:
            return False
        self._replays.setdefault(entry_id, []).append(_replay_record(new_task_id, self.clock()))
        return True

    def _ids(self, *, oldest_first: bool) -> builtins.list[str]:
        """Entry ids by failure time, ties by id: the order of Redis's sorted set."""
        return sorted(self._failed_ms, key=lambda id_: (self._failed_ms[id_], id_), reverse=not oldest_first)

    def _drop(self, entry_id: str) -> bool:
        raw = self._entries.pop(entry_id, None)
        if raw is not None:
            task_id = json.loads(raw)["task_id"]
            if self._by_task.get(task_id) == entry_id:
                del self._by_task[task_id]
        self._failed_ms.pop(entry_id, None)
        self._replays.pop(entry_id, None)
        return raw is not None

    def _expire(self) -> None:
        """Forget everything once a whole TTL passed without an add, as Redis expires the store's keys."""
        if self._expires_ms is not None and int(self.clock() * 1000) >= self._expires_ms:
            self._expires_ms = None
            self.purge()
