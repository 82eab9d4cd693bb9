"""The dead-letter store: tasks that failed for good, kept in Redis for inspection and replay.

A worker calls :func:`dead_letter` once a task's failure is final; ``stepper dlq`` lists, shows, replays and
purges. Four keys hold the store, all written by Lua scripts so that concurrent workers never race:

- ``stepper:dlq:entries``  hash, entry id -> the failure as JSON (task id, kind, request, error, attempts...)
- ``stepper:dlq:index``    sorted set, entry id scored by its failure time (ms): newest first, oldest trimmed
- ``stepper:dlq:by-task``  hash, task id -> entry id: a redelivered task failing again updates its entry
- ``stepper:dlq:replays``  hash, entry id -> JSON list of ``{task_id, at}``, appended to on each replay

Requests are stored with their secrets redacted (:func:`redact`): the store keeps entries for weeks, far longer
than the broker keeps a message. A request that lost a secret cannot be replayed as it is.
"""

from __future__ import annotations

import builtins
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, cast
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict
from redis import Redis

from stepper.config import DeadLetterSettings
from stepper.errors import InvalidRequest
from stepper.logs import REDACTED, Redactor, configured_secrets
from stepper.schemas import KINDS, Kind

log = logging.getLogger(__name__)

ENTRIES_KEY = "stepper:dlq:entries"
INDEX_KEY = "stepper:dlq:index"
BY_TASK_KEY = "stepper:dlq:by-task"
REPLAYS_KEY = "stepper:dlq:replays"
_KEYS = (ENTRIES_KEY, INDEX_KEY, BY_TASK_KEY, REPLAYS_KEY)

#: A key whose name contains one of these (any case) holds a secret.
SENSITIVE_NAME = re.compile(r"key|token|secret|password|authorization", re.IGNORECASE)
#: stepper's own request fields that match SENSITIVE_NAME but are not secrets; redacting them would make
#: every chat request with ``max_tokens`` and every request with an ``idempotency_key`` unreplayable.
NOT_SECRETS = frozenset({"max_tokens", "idempotency_key"})
#: Expired entries dropped per add, so that one add never holds Redis for long.
_EXPIRED_PER_ADD = 1000

# Removes one entry from all four keys; the by-task mapping only if it still points at this entry.
_DROP = """
local function drop(id)
  local raw = redis.call('HGET', KEYS[1], id)
  if raw then
    local task_id = cjson.decode(raw)['task_id']
    if redis.call('HGET', KEYS[3], task_id) == id then redis.call('HDEL', KEYS[3], task_id) end
  end
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[4], id)
  return raw and 1 or 0
end
"""

# ARGV: task id, candidate entry id, entry JSON, now (ms), TTL cutoff (ms), max entries, key TTL (ms),
# expired entries to drop at most.
# A task already in the store keeps its entry id (and its replays); the entry gets the latest failure.
_ADD = (
    _DROP
    + """
local id = redis.call('HGET', KEYS[3], ARGV[1])
if not id or redis.call('HEXISTS', KEYS[1], id) == 0 then
  id = ARGV[2]
  local n = 1
  while redis.call('HEXISTS', KEYS[1], id) == 1 do
    id = ARGV[2] .. '-' .. n
    n = n + 1
  end
  redis.call('HSET', KEYS[3], ARGV[1], id)
end
redis.call('HSET', KEYS[1], id, ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], id)
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[5], 'LIMIT', 0, ARGV[8])) do
  drop(old)
end
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
if excess > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, excess - 1)) do drop(old) end
end
-- Every entry is older than the newest: when nothing is added for a whole TTL, the store expires whole.
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[7]) end
return id
"""
)

_REMOVE = _DROP + "return drop(ARGV[1])"

# Appends one JSON object to the entry's JSON list of replays, without decoding (and re-encoding) it.
_RECORD_REPLAY = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local replays = redis.call('HGET', KEYS[4], ARGV[1])
if replays then
  replays = string.sub(replays, 1, -2) .. ',' .. ARGV[2] .. ']'
else
  replays = '[' .. ARGV[2] .. ']'
end
redis.call('HSET', KEYS[4], ARGV[1], replays)
return 1
"""


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


class DeadLetterStore:
    """Dead letters in Redis, newest first, at most ``max_entries`` of them and none older than ``ttl_s``."""

    def __init__(self, client: Redis, settings: DeadLetterSettings, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.settings = settings
        self.clock = clock
        self._add = client.register_script(_ADD)
        self._remove = client.register_script(_REMOVE)
        self._record_replay = client.register_script(_RECORD_REPLAY)

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
        stored = {
            "task_id": task_id,
            "kind": kind,
            "request": redact(request),
            "error": {"type": error_type, "message": error_message},
            "attempts": [dict(attempt) for attempt in attempts],
            "retries": retries,
            "failed_at": _iso(now),
        }
        ttl_ms = int(self.settings.ttl_s * 1000)
        entry_id = self._add(
            keys=_KEYS,
            args=[
                task_id,
                f"{now_ms}-{task_id[:8]}",
                json.dumps(stored, separators=(",", ":")),
                now_ms,
                now_ms - ttl_ms,
                self.settings.max_entries,
                ttl_ms + 1000,
                _EXPIRED_PER_ADD,
            ],
        )
        return _text(entry_id)

    def get(self, entry_id: str) -> Entry | None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(ENTRIES_KEY, entry_id)
        pipe.hget(REPLAYS_KEY, entry_id)
        raw, replays = pipe.execute()
        return None if raw is None else _entry(entry_id, raw, replays)

    def require(self, entry_id: str) -> Entry:
        """The entry, or InvalidRequest saying how to find the right id."""
        entry = self.get(entry_id)
        if entry is None:
            raise InvalidRequest(
                f"no dead letter {entry_id!r} (expired, removed or never stored); `stepper dlq list` shows the ids"
            )
        return entry

    def list(self, limit: int = 50, kind: str | None = None) -> builtins.list[Entry]:
        """The newest ``limit`` entries (of ``kind``, when given), newest first."""
        if limit <= 0:
            return []
        if kind is None:
            return self._load(_members(self.client.zrevrange(INDEX_KEY, 0, limit - 1)))
        found: builtins.list[Entry] = []
        for entry in self.entries(kind):
            found.append(entry)
            if len(found) == limit:
                break
        return found

    def entries(self, kind: str | None = None, *, oldest_first: bool = False, page: int = 200) -> Iterator[Entry]:
        """Every entry (of ``kind``), newest first unless ``oldest_first``, read ``page`` at a time.

        The ids are read once at the start: entries added meanwhile are not seen, removed ones are skipped.
        """
        ids = _members(self.client.zrange(INDEX_KEY, 0, -1, desc=not oldest_first))
        for start in range(0, len(ids), page):
            for entry in self._load(ids[start : start + page]):
                if kind is None or entry.kind == kind:
                    yield entry

    def remove(self, entry_id: str) -> bool:
        """Remove one entry; False when there was none."""
        return bool(self._remove(keys=_KEYS, args=[entry_id]))

    def purge(self) -> int:
        """Remove every entry; return how many there were."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hlen(ENTRIES_KEY)
        pipe.delete(*_KEYS)
        count, _ = pipe.execute()
        return int(count)

    def size(self) -> int:
        return int(self.client.zcard(INDEX_KEY))

    def record_replay(self, entry_id: str, new_task_id: str) -> bool:
        """Link the entry to the task that resubmitted it; False when the entry is gone."""
        replay = json.dumps({"task_id": new_task_id, "at": _iso(self.clock())}, separators=(",", ":"))
        return bool(self._record_replay(keys=_KEYS, args=[entry_id, replay]))

    def _load(self, ids: builtins.list[str]) -> builtins.list[Entry]:
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(ENTRIES_KEY, ids)
        pipe.hmget(REPLAYS_KEY, ids)
        raws, replays = pipe.execute()
        return [_entry(id_, raw, rep) for id_, raw, rep in zip(ids, raws, replays, strict=True) if raw is not None]


def redact(value: Any) -> Any:
    """A copy of a JSON value with its secrets replaced by ``[redacted]``.

    A key whose name contains key, token, secret, password or authorization (any case) has its value
    replaced, whatever it holds (None stays None: there is nothing to hide); an http(s) URL anywhere loses its
    userinfo and the values of query (and fragment) parameters with such names. Everything else is unchanged.
    """
    if isinstance(value, Mapping):
        return {key: _redact_item(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str) and value[:8].lower().startswith(("http://", "https://")):
        return redact_url(value)
    return value


def redact_url(url: str) -> str:
    """The URL without its userinfo (``[redacted]@`` instead) and with sensitive parameter values redacted."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not parseable (a broken IPv6 host): no way to tell which part is secret
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    return urlunsplit((parts.scheme, netloc, parts.path, _redact_params(parts.query), _redact_params(parts.fragment)))


def contains_redacted(value: Any) -> bool:
    """Whether ``[redacted]`` appears anywhere in a JSON value (a key, a value, inside a URL)."""
    if isinstance(value, Mapping):
        return any(REDACTED in str(key) or contains_redacted(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(contains_redacted(item) for item in value)
    return isinstance(value, str) and REDACTED in value


def replay(store: DeadLetterStore, entry_id: str, submit: Submit | None = None) -> str:
    """Resubmit an entry's request as a new task (``stepper.producer.submit`` by default); return its id.

    The request goes without its ``idempotency_key``: that key still maps to the failed task, so submitting
    it again would hand back the failure instead of running anything.
    """
    entry = store.require(entry_id)
    if contains_redacted(entry.request):
        raise InvalidRequest(
            f"entry {entry_id} had secrets redacted; resubmit it yourself: `stepper dlq show {entry_id}` prints "
            "the request, to submit again with the secrets filled in"
        )
    if entry.kind not in KINDS:
        raise InvalidRequest(f"entry {entry_id} is of kind {entry.kind!r}, which this stepper does not serve")
    if submit is None:
        from stepper.producer import submit as submit_to_fleet

        submit = submit_to_fleet
    # Without its idempotency key (it maps to the failed task) and past the cache: a replay runs again.
    request = {key: value for key, value in entry.request.items() if key != "idempotency_key"} | {"cache": "bypass"}
    new_task_id = str(submit(entry.kind, request).id)
    store.record_replay(entry.id, new_task_id)
    return new_task_id


def open_store() -> DeadLetterStore:
    """The store of this process's fleet: the state Redis and the configured limits."""
    from stepper.config import current_settings
    from stepper.runtime import state_redis

    return DeadLetterStore(state_redis(), current_settings().dead_letters)


def dead_letter(  # noqa: PLR0917  (the worker's call, the same fields as DeadLetterStore.add)
    task_id: str,
    kind: str,
    request: Mapping[str, Any] | BaseModel,
    error: BaseException,
    attempts: Sequence[Mapping[str, Any] | BaseModel],
    retries: int,
) -> None:
    """Record a task whose failure is final. Never raises: a failure here is logged, and the task's own error
    is what its caller sees. Known secrets and bearer tokens are removed from the error texts too."""
    try:
        redactor = Redactor(configured_secrets())
        payload = request.model_dump(mode="json", exclude_unset=True) if isinstance(request, BaseModel) else request
        tried = [
            _redact_error_text(redactor, a.model_dump(mode="json") if isinstance(a, BaseModel) else dict(a))
            for a in attempts
        ]
        open_store().add(task_id, kind, payload, type(error).__name__, redactor.redact(str(error)), tried, retries)
    except Exception as exc:  # noqa: BLE001  (the dead-letter store must never mask the task's own failure)
        log.error("could not dead-letter task %s (%s): %s: %s", task_id, kind, type(exc).__name__, exc)


def _is_secret_name(name: str) -> bool:
    return SENSITIVE_NAME.search(name) is not None and name.lower() not in NOT_SECRETS


def _redact_item(key: str, item: Any) -> Any:
    return REDACTED if item is not None and _is_secret_name(key) else redact(item)


def _redact_params(text: str) -> str:
    """``a=1&token=x`` -> ``a=1&token=[redacted]``; other parameters are kept byte for byte."""
    if "=" not in text:
        return text
    params = []
    for param in text.split("&"):
        name, equals, value = param.partition("=")
        params.append(f"{name}={REDACTED}" if equals and value and _is_secret_name(unquote_plus(name)) else param)
    return "&".join(params)


def _redact_error_text(redactor: Redactor, attempt: dict[str, Any]) -> dict[str, Any]:
    if isinstance(attempt.get("error"), str):
        attempt["error"] = redactor.redact(attempt["error"])
    return attempt


def _entry(entry_id: str, raw: bytes | str, replays: bytes | str | None) -> Entry:
    return Entry.model_validate({**json.loads(raw), "id": entry_id, "replays": json.loads(replays or "[]")})


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _members(found: Any) -> builtins.list[str]:
    return [_text(member) for member in cast(builtins.list[bytes], found)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
