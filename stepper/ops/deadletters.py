"""The dead-letter store: tasks that failed for good, kept in Redis for inspection and replay.

A worker adds a task once its failure is final (:mod:`stepper.outcomes.deadletter`); ``stepper dlq`` lists,
shows, replays and purges. Four keys hold the store, all written by Lua scripts so that concurrent workers never race:

- ``stepper:dlq:entries``  hash, entry id -> the failure as JSON (task id, kind, request, error, attempts...)
- ``stepper:dlq:index``    sorted set, entry id scored by its failure time (ms): newest first, oldest trimmed
- ``stepper:dlq:by-task``  hash, task id -> entry id: a redelivered task failing again updates its entry
- ``stepper:dlq:replays``  hash, entry id -> JSON list of ``{task_id, at}``, appended to on each replay

Requests are stored with their secrets redacted (:func:`redact`): the store keeps entries for weeks, far longer
than the broker keeps a message. A request that lost a secret cannot be replayed as it is.

:class:`DeadLetters` is the store's interface; :class:`~stepper.ops.deadletters_memory.MemoryDeadLetterStore` is
its twin in one process's memory, with the same ids, ordering, trimming and expiry, for tests without a Redis.
"""

from __future__ import annotations

import builtins
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from pydantic import BaseModel, ConfigDict
from redis import Redis

from stepper.errors import InvalidRequest
from stepper.infra import keys, lua
from stepper.infra.connections import as_text
from stepper.infra.redaction import contains_redacted, redact
from stepper.schemas import KINDS, Kind
from stepper.settings import DeadLetterSettings

log = logging.getLogger(__name__)


#: Expired entries dropped per add, so that one add never holds Redis for long.
_EXPIRED_PER_ADD = 1000


class EntryError(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: str
    message: str


class Replay(BaseModel):
    """One resubmission of an entry: the new task and when (ISO 8601 UTC)."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    at: str


class Entry(BaseModel):
    """One dead letter as stored: the failed task, its (redacted) request and how it failed."""

    model_config = ConfigDict(frozen=True)

    id: str
    task_id: str
    kind: str
    request: dict[str, Any]
    error: EntryError
    attempts: tuple[dict[str, Any], ...]
    retries: int
    #: ISO 8601, UTC; the latest failure when a redelivered task failed again.
    failed_at: str
    replays: tuple[Replay, ...] = ()


class Submitted(Protocol):
    """What a submit function returns: anything with the new task's id (Celery's AsyncResult)."""

    @property
    def id(self) -> str: ...


Submit = Callable[[Kind, dict[str, Any]], Submitted]


class DeadLetters(Protocol):
    """A dead-letter store: entries newest first, one per task id, bounded by count and age, requests redacted."""

    def add(  # noqa: PLR0917  (one failure record, field by field)
        self,
        task_id: str,
        kind: str,
        request: Mapping[str, Any],
        error_type: str,
        error_message: str,
        attempts: Sequence[Mapping[str, Any]],
        retries: int,
    ) -> str: ...

    def get(self, entry_id: str) -> Entry | None: ...

    def require(self, entry_id: str) -> Entry: ...

    def list(self, limit: int = 50, kind: str | None = None) -> builtins.list[Entry]: ...

    def entries(self, kind: str | None = None, *, oldest_first: bool = False, page: int = 200) -> Iterator[Entry]: ...

    def remove(self, entry_id: str) -> bool: ...

    def purge(self) -> int: ...

    def size(self) -> int: ...

    def record_replay(self, entry_id: str, new_task_id: str) -> bool: ...


class DeadLetterStore:
    """Dead letters in Redis, newest first, at most ``max_entries`` of them and none older than ``ttl_s``."""

    def __init__(self, client: Redis, settings: DeadLetterSettings, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.settings = settings
        self.clock = clock
        #: entries, index, by-task, replays (see stepper.infra.keys)
        self._keys = keys.dead_letters()
        self._add = lua.script(client, "dead_letters_drop", "dead_letters_add")
        self._remove = lua.script(client, "dead_letters_drop", "dead_letters_remove")
        self._record_replay = lua.script(client, "dead_letters_record_replay")

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
        now = self.clock()
        now_ms = int(now * 1000)
        stored = _stored(task_id, kind, request, error_type, error_message, attempts, retries, now)
        ttl_ms = int(self.settings.ttl_s * 1000)
        entry_id = self._add(
            keys=self._keys,
            args=[
                task_id,
                _candidate_id(now_ms, task_id),
                stored,
                now_ms,
                now_ms - ttl_ms,
                self.settings.max_entries,
                ttl_ms + 1000,
                _EXPIRED_PER_ADD,
            ],
        )
        return as_text(entry_id)

    def get(self, entry_id: str) -> Entry | None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self._keys[0], entry_id)
        pipe.hget(self._keys[3], entry_id)
        raw, replays = pipe.execute()
        return None if raw is None else _entry(entry_id, raw, replays)

    def require(self, entry_id: str) -> Entry:
        """The entry, or InvalidRequest saying how to find the right id."""
        return _found(self.get(entry_id), entry_id)

    def list(self, limit: int = 50, kind: str | None = None) -> builtins.list[Entry]:
        """The newest ``limit`` entries (of ``kind``, when given), newest first."""
        if limit <= 0:
            return []
        if kind is None:
            return self._load(_members(self.client.zrevrange(self._keys[1], 0, limit - 1)))
        return builtins.list(itertools.islice(self.entries(kind), limit))

    def entries(self, kind: str | None = None, *, oldest_first: bool = False, page: int = 200) -> Iterator[Entry]:
        """Every entry (of ``kind``), newest first unless ``oldest_first``, read ``page`` at a time.

        The ids are read once at the start: entries added meanwhile are not seen, removed ones are skipped.
        """
        ids = _members(self.client.zrange(self._keys[1], 0, -1, desc=not oldest_first))
        for start in range(0, len(ids), page):
            for entry in self._load(ids[start : start + page]):
                if kind is None or entry.kind == kind:
                    yield entry

    def remove(self, entry_id: str) -> bool:
        """Remove one entry; False when there was none."""
        return bool(self._remove(keys=self._keys, args=[entry_id]))

    def purge(self) -> int:
        """Remove every entry; return how many there were."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hlen(self._keys[0])
        pipe.delete(*self._keys)
        count, _ = pipe.execute()
        return int(count)

    def size(self) -> int:
        return int(self.client.zcard(self._keys[1]))

    def record_replay(self, entry_id: str, new_task_id: str) -> bool:
        """Link the entry to the task that resubmitted it; False when the entry is gone."""
        replay = json.dumps(_replay_record(new_task_id, self.clock()), separators=(",", ":"))
        return bool(self._record_replay(keys=self._keys, args=[entry_id, replay]))

    def _load(self, ids: builtins.list[str]) -> builtins.list[Entry]:
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(self._keys[0], ids)
        pipe.hmget(self._keys[3], ids)
        raws, replays = pipe.execute()
        return [_entry(id_, raw, rep) for id_, raw, rep in zip(ids, raws, replays, strict=True) if raw is not None]


def replay(store: DeadLetters, entry_id: str, submit: Submit) -> str:
    """Resubmit an entry's request as a new task through ``submit`` (``stepper.submit``); return its id.

    The request goes without its ``idempotency_key``: that key still maps to the failed task, so submitting
    it again would hand back the failure instead of running anything.
    """
    entry = store.require(entry_id)
    if contains_redacted(entry.request):
        raise InvalidRequest(
            f"entry {entry_id} had secrets redacted; resubmit it yourself: `stepper dlq show {entry_id}` prints "
            "the request, to submit again with the secrets filled in"
        )
    if entry.kind.startswith("workflow.") and "resume" in entry.request:
        # A workflow's piece (stepper.workflows): resuming the workflow reruns it, and only what is missing.
        raise InvalidRequest(f"entry {entry_id} is a workflow's failed piece; resume it: {entry.request['resume']}")
    if entry.kind not in KINDS:
        raise InvalidRequest(f"entry {entry_id} is of kind {entry.kind!r}, which this stepper does not serve")
    # Without its idempotency key (it maps to the failed task) and past the cache: a replay runs again.
    request = {key: value for key, value in entry.request.items() if key != "idempotency_key"} | {"cache": "bypass"}
    new_task_id = str(submit(entry.kind, request).id)
    store.record_replay(entry.id, new_task_id)
    return new_task_id


def open_store() -> DeadLetterStore:
    """The store of this process's fleet: the state Redis and the configured limits."""
    from stepper.config import current_settings
    from stepper.infra.connections import state_redis

    return DeadLetterStore(state_redis(), current_settings().dead_letters)


def _stored(  # noqa: PLR0917  (DeadLetters.add's fields)
    task_id: str,
    kind: str,
    request: Mapping[str, Any],
    error_type: str,
    error_message: str,
    attempts: Sequence[Mapping[str, Any]],
    retries: int,
    now: float,
) -> str:
    """One failure as stored, JSON: its request redacted, failed at ``now``."""
    stored = {
        "task_id": task_id,
        "kind": kind,
        "request": redact(request),
        "error": {"type": error_type, "message": error_message},
        "attempts": [dict(attempt) for attempt in attempts],
        "retries": retries,
        "failed_at": _iso(now),
    }
    return json.dumps(stored, separators=(",", ":"))


def _candidate_id(now_ms: int, task_id: str) -> str:
    """A new entry's id: its failure time and the task id's start (``-1``, ``-2``... appended when taken)."""
    return f"{now_ms}-{task_id[:8]}"


def _replay_record(new_task_id: str, now: float) -> dict[str, str]:
    return {"task_id": new_task_id, "at": _iso(now)}


def _found(entry: Entry | None, entry_id: str) -> Entry:
    if entry is None:
        raise InvalidRequest(
            f"no dead letter {entry_id!r} (expired, removed or never stored); `stepper dlq list` shows the ids"
        )
    return entry


def _entry(entry_id: str, raw: bytes | str, replays: bytes | str | None) -> Entry:
    return Entry.model_validate({**json.loads(raw), "id": entry_id, "replays": json.loads(replays or "[]")})


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _members(found: Any) -> builtins.list[str]:
    return [as_text(member) for member in cast(builtins.list[bytes], found)]
