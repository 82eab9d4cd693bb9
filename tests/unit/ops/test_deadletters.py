"""The dead-letter store: one entry per failed task, newest first, bounded, secrets redacted, replayable."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

from stepper.cli import main
from stepper.errors import ChainExhausted, InvalidRequest
from stepper.infra import connections, keys
from stepper.infra.redaction import redact, redact_url
from stepper.ops.deadletters import DeadLetters, DeadLetterStore, replay
from stepper.ops.deadletters_memory import MemoryDeadLetterStore
from stepper.outcomes.deadletter import dead_letter
from stepper.schemas import ChatRequest
from stepper.settings import DeadLetterSettings

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
CHAT = {"messages": [{"role": "user", "content": "hello"}]}
ATTEMPTS = [{"provider": "openai", "model": "gpt-4o-mini", "outcome": "retryable_error", "error": "503", "ms": 12.5}]

ENTRIES_KEY, INDEX_KEY, BY_TASK_KEY, REPLAYS_KEY = keys.dead_letters()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Submitted:
    id: str


@dataclass
class FakeSubmit:
    """Records each call and hands out task ids new-1, new-2..."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, kind: str, request: dict[str, Any]) -> Submitted:
        self.calls.append((kind, request))
        return Submitted(f"new-{len(self.calls)}")


@pytest.fixture
def clock() -> Clock:
    return Clock()


NewStore = Callable[[DeadLetterSettings], DeadLetters]


@pytest.fixture(params=["memory", "redis"])
def new_store(request: pytest.FixtureRequest, clock: Clock) -> NewStore:
    """Makes stores of one implementation: in memory, or on the private Redis (one Redis, one store)."""
    if request.param == "memory":
        return lambda settings: MemoryDeadLetterStore(settings, clock=clock)
    client: redis.Redis = request.getfixturevalue("redis_client")
    return lambda settings: DeadLetterStore(client, settings, clock=clock)


@pytest.fixture
def store(new_store: NewStore) -> DeadLetters:
    """Every store test runs on both implementations: in memory and on the private Redis."""
    return new_store(DeadLetterSettings(max_entries=100, ttl_s=3600))


@pytest.fixture
def redis_store(redis_client: redis.Redis, clock: Clock) -> DeadLetterStore:
    """For what only the Redis store has: its keys, their expiry, its scripts."""
    return DeadLetterStore(redis_client, DeadLetterSettings(max_entries=100, ttl_s=3600), clock=clock)


def add(store: DeadLetters, task_id: str, kind: str = "chat", request: dict[str, Any] | None = None) -> str:
    return store.add(task_id, kind, request or CHAT, "ChainExhausted", "every provider failed", ATTEMPTS, 2)


# The store


def test_add_stores_the_failure_under_a_time_based_id(store: DeadLetters) -> None:
    entry_id = add(store, "3f2a1b4c-0000-4000-8000-000000000001")

    assert entry_id == "1700000000000-3f2a1b4c"
    entry = store.get(entry_id)
    assert entry is not None
    assert (entry.id, entry.task_id, entry.kind) == (entry_id, "3f2a1b4c-0000-4000-8000-000000000001", "chat")
    assert entry.request == CHAT
    assert (entry.error.type, entry.error.message) == ("ChainExhausted", "every provider failed")
    assert list(entry.attempts) == ATTEMPTS
    assert entry.retries == 2
    assert entry.failed_at == "2023-11-14T22:13:20.000Z"
    assert entry.replays == ()
    assert store.size() == 1


def test_redis_indexes_an_entry_by_failure_time_and_by_task(
    redis_store: DeadLetterStore, redis_client: redis.Redis
) -> None:
    entry_id = add(redis_store, "3f2a1b4c-0000-4000-8000-000000000001")

    assert redis_client.zscore(INDEX_KEY, entry_id) == NOW * 1000
    assert redis_client.hget(BY_TASK_KEY, "3f2a1b4c-0000-4000-8000-000000000001") == entry_id.encode()


def test_the_request_is_stored_redacted(store: DeadLetters) -> None:
    entry_id = add(store, "task-1", request={**CHAT, "api_key": "sk-live-0123456789"})

    entry = store.get(entry_id)
    assert entry is not None
    assert entry.request["api_key"] == "[redacted]"


def test_redis_never_holds_the_secret(redis_store: DeadLetterStore, redis_client: redis.Redis) -> None:
    entry_id = add(redis_store, "task-1", request={**CHAT, "api_key": "sk-live-0123456789"})

    stored = redis_client.hget(ENTRIES_KEY, entry_id)
    assert isinstance(stored, bytes)
    assert b"sk-live" not in stored


def test_the_same_task_failing_again_keeps_one_entry_with_the_latest_failure(store: DeadLetters, clock: Clock) -> None:
    first = add(store, "task-redelivered")
    store.record_replay(first, "earlier-replay")
    clock.now += 30
    second = store.add("task-redelivered", "chat", CHAT, "Timeout", "took too long", [], 3)

    assert second == first
    assert store.size() == 1
    entry = store.get(first)
    assert entry is not None
    assert (entry.error.type, entry.retries, entry.failed_at) == ("Timeout", 3, "2023-11-14T22:13:50.000Z")
    assert [replayed.task_id for replayed in entry.replays] == ["earlier-replay"]


def test_redis_moves_a_task_failing_again_to_the_newest_failure(
    redis_store: DeadLetterStore, clock: Clock, redis_client: redis.Redis
) -> None:
    first = add(redis_store, "task-redelivered")
    clock.now += 30
    add(redis_store, "task-redelivered")

    assert redis_client.hlen(ENTRIES_KEY) == 1
    assert redis_client.zscore(INDEX_KEY, first) == (NOW + 30) * 1000  # listed as the newest failure


def test_tasks_sharing_an_id_prefix_in_the_same_millisecond_get_two_entries(store: DeadLetters) -> None:
    first, second = add(store, "batch-job-1"), add(store, "batch-job-2")

    assert first == "1700000000000-batch-jo"
    assert second == "1700000000000-batch-jo-1"
    assert {entry.task_id for entry in store.list()} == {"batch-job-1", "batch-job-2"}


def test_list_is_newest_first_and_filters_by_kind(store: DeadLetters, clock: Clock) -> None:
    ids = []
    for number, kind in enumerate(["chat", "ocr", "chat", "speech", "chat"]):
        clock.now = NOW + number
        ids.append(add(store, f"task-{number}", kind=kind))

    assert [entry.id for entry in store.list()] == ids[::-1]
    assert [entry.id for entry in store.list(limit=2)] == [ids[4], ids[3]]
    assert [entry.id for entry in store.list(kind="chat")] == [ids[4], ids[2], ids[0]]
    assert [entry.id for entry in store.list(kind="chat", limit=2)] == [ids[4], ids[2]]
    assert store.list(kind="vision") == []
    assert store.list(limit=0) == []
    assert [entry.id for entry in store.entries(oldest_first=True, page=2)] == ids


def test_add_trims_the_oldest_beyond_max_entries(new_store: NewStore, clock: Clock) -> None:
    store = new_store(DeadLetterSettings(max_entries=3, ttl_s=3600))
    ids = []
    for number in range(5):
        clock.now = NOW + number
        ids.append(add(store, f"task-{number}"))

    assert [entry.id for entry in store.list()] == ids[:1:-1]
    assert store.get(ids[0]) is None
    assert store.size() == 3
    # A trimmed task failing again is a new entry, not a pointer to a missing one.
    clock.now = NOW + 10
    again = add(store, "task-0")
    assert again != ids[0]
    assert store.get(again) is not None


def test_redis_trimming_drops_every_key_of_an_entry(redis_client: redis.Redis, clock: Clock) -> None:
    store = DeadLetterStore(redis_client, DeadLetterSettings(max_entries=3, ttl_s=3600), clock=clock)
    for number in range(5):
        clock.now = NOW + number
        add(store, f"task-{number}")

    assert redis_client.hlen(ENTRIES_KEY) == 3
    assert sorted(redis_client.hkeys(BY_TASK_KEY)) == [b"task-2", b"task-3", b"task-4"]


def test_add_drops_entries_older_than_the_ttl(new_store: NewStore, clock: Clock) -> None:
    store = new_store(DeadLetterSettings(max_entries=100, ttl_s=60))
    old = add(store, "task-old")
    store.record_replay(old, "replayed-old")
    clock.now = NOW + 50
    recent = add(store, "task-recent")
    clock.now = NOW + 61
    newest = add(store, "task-newest")

    assert [entry.id for entry in store.list()] == [newest, recent]
    assert store.get(old) is None
    assert store.record_replay(old, "too-late") is False


def test_redis_ttl_drops_every_key_of_an_entry_and_expires_the_keys(redis_client: redis.Redis, clock: Clock) -> None:
    store = DeadLetterStore(redis_client, DeadLetterSettings(max_entries=100, ttl_s=60), clock=clock)
    old = add(store, "task-old")
    store.record_replay(old, "replayed-old")
    clock.now = NOW + 50
    add(store, "task-recent")
    clock.now = NOW + 61
    add(store, "task-newest")

    assert redis_client.hget(BY_TASK_KEY, "task-old") is None
    assert redis_client.hget(REPLAYS_KEY, old) is None
    # With no failure for a whole TTL, every entry is expired: Redis drops the keys themselves.
    assert 0 < redis_client.pttl(ENTRIES_KEY) <= 61_000
    assert 0 < redis_client.pttl(INDEX_KEY) <= 61_000


def test_the_memory_store_expires_whole_after_a_ttl_without_failures(clock: Clock) -> None:
    """What Redis does to the keys (their PTTL, above), the memory store does by its clock."""
    store = MemoryDeadLetterStore(DeadLetterSettings(max_entries=100, ttl_s=60), clock=clock)
    entry_id = add(store, "task-1")
    clock.now = NOW + 60.999
    assert store.get(entry_id) is not None  # older than the TTL, but nothing was added to drop it
    clock.now = NOW + 61

    assert store.get(entry_id) is None
    assert store.size() == 0
    assert add(store, "task-1") == "1700000061000-task-1"  # a new entry: the by-task link went too


def test_remove(store: DeadLetters, clock: Clock) -> None:
    kept, removed = add(store, "task-kept"), add(store, "task-removed")
    store.record_replay(removed, "new-1")

    assert store.remove(removed) is True
    assert store.remove(removed) is False
    assert [entry.id for entry in store.list()] == [kept]
    assert store.record_replay(removed, "new-2") is False
    clock.now = NOW + 1
    assert add(store, "task-removed") == "1700000001000-task-rem"  # a new entry, not the removed one


def test_redis_remove_drops_every_key_of_the_entry(redis_store: DeadLetterStore, redis_client: redis.Redis) -> None:
    add(redis_store, "task-kept")
    removed = add(redis_store, "task-removed")
    redis_store.record_replay(removed, "new-1")

    assert redis_store.remove(removed) is True
    assert redis_client.hkeys(BY_TASK_KEY) == [b"task-kept"]
    assert redis_client.hget(REPLAYS_KEY, removed) is None


def test_purge_removes_everything_and_counts_it(store: DeadLetters) -> None:
    for number in range(4):
        add(store, f"task-{number}")

    assert store.purge() == 4
    assert store.size() == 0
    assert store.list() == []
    assert store.purge() == 0


def test_redis_purge_deletes_the_keys(redis_store: DeadLetterStore, redis_client: redis.Redis) -> None:
    for number in range(4):
        add(redis_store, f"task-{number}")

    assert redis_store.purge() == 4
    assert not any(redis_client.exists(key) for key in (ENTRIES_KEY, INDEX_KEY, BY_TASK_KEY, REPLAYS_KEY))


def test_record_replay_appends_with_the_time(store: DeadLetters, clock: Clock) -> None:
    entry_id = add(store, "task-1")
    clock.now = NOW + 1.5
    assert store.record_replay(entry_id, "new-1") is True
    clock.now = NOW + 2
    assert store.record_replay(entry_id, "new-2") is True

    entry = store.get(entry_id)
    assert entry is not None
    assert [(r.task_id, r.at) for r in entry.replays] == [
        ("new-1", "2023-11-14T22:13:21.500Z"),
        ("new-2", "2023-11-14T22:13:22.000Z"),
    ]
    assert store.record_replay("1-missing", "new-3") is False


# Replay


def test_replay_submits_the_request_as_a_new_task_and_links_it(store: DeadLetters) -> None:
    request = {**CHAT, "max_tokens": 64, "idempotency_key": "order-42", "temperature": 0}
    entry_id = add(store, "task-1", request=request)
    submit = FakeSubmit()

    assert replay(store, entry_id, submit) == "new-1"
    assert replay(store, entry_id, submit) == "new-2"

    # Without its idempotency key, which still maps to the failed task: it would hand back the failure.
    assert submit.calls == [("chat", {**CHAT, "max_tokens": 64, "temperature": 0, "cache": "bypass"})] * 2
    entry = store.get(entry_id)
    assert entry is not None
    assert [replayed.task_id for replayed in entry.replays] == ["new-1", "new-2"]


@pytest.mark.parametrize(
    "request_",
    [
        {**CHAT, "api_key": "sk-live-0123"},
        {**CHAT, "callback_url": "https://hooks.example/done?token=abc"},
        {"images": [{"url": "https://user:pw@images.example/a.png"}]},
    ],
)
def test_replay_refuses_a_request_that_lost_secrets(store: DeadLetters, request_: dict[str, Any]) -> None:
    entry_id = add(store, "task-1", request=request_)
    submit = FakeSubmit()

    with pytest.raises(InvalidRequest, match=rf"entry {entry_id} had secrets redacted; resubmit it yourself"):
        replay(store, entry_id, submit)
    assert submit.calls == []
    entry = store.get(entry_id)
    assert entry is not None
    assert entry.replays == ()


def test_replay_of_a_missing_entry_says_where_to_find_ids(store: DeadLetters) -> None:
    with pytest.raises(InvalidRequest, match=r"no dead letter '1-nope'.*stepper dlq list"):
        replay(store, "1-nope", FakeSubmit())


# Redaction

SENSITIVE_WORDS = ["key", "token", "secret", "password", "authorization"]
SENSITIVE = re.compile("|".join(SENSITIVE_WORDS), re.IGNORECASE)
PLANTED = "S3CRET-"  # upper case, digits and dashes: no ordinary key or value below can contain it


def test_redact_replaces_values_under_sensitive_names_at_any_depth() -> None:
    request = {
        "messages": [{"role": "user", "content": "hi"}],
        "API_KEY": "sk-1",
        "options": {"X-Api-Key": "sk-2", "accessToken": 12345, "client_secret": {"nested": "sk-3"}},
        "headers": [{"Authorization": "Bearer sk-4"}, {"accept": "json"}],
        "db_password": None,  # nothing to hide
        "max_tokens": 64,  # stepper's own field, not a secret
        "idempotency_key": "order-42",  # likewise
    }

    assert redact(request) == {
        "messages": [{"role": "user", "content": "hi"}],
        "API_KEY": "[redacted]",
        "options": {"X-Api-Key": "[redacted]", "accessToken": "[redacted]", "client_secret": "[redacted]"},
        "headers": [{"Authorization": "[redacted]"}, {"accept": "json"}],
        "db_password": None,
        "max_tokens": 64,
        "idempotency_key": "order-42",
    }
    assert request["API_KEY"] == "sk-1"  # a copy: the caller's request is untouched


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@example.com/a?b=1", "https://[redacted]@example.com/a?b=1"),
        ("http://token@example.com:8080/", "http://[redacted]@example.com:8080/"),
        (
            "https://example.com/hook?id=7&access_token=abc&Signature=x&api%5Fkey=k&page=2",
            "https://example.com/hook?id=7&access_token=[redacted]&Signature=x&api%5Fkey=[redacted]&page=2",
        ),
        (
            "https://example.com/cb#access_token=abc&state=xyz",
            "https://example.com/cb#access_token=[redacted]&state=xyz",
        ),
        ("HTTPS://example.com/?q=a%20b&sort=desc&token=", "https://example.com/?q=a%20b&sort=desc&token="),
        ("https://example.com/path/with/token/in/it", "https://example.com/path/with/token/in/it"),
        ("https://[::1/broken", "[redacted]"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert redact({"callback_url": url, "images": [{"url": url}]}) == {
        "callback_url": expected,
        "images": [{"url": expected}],
    }


def test_strings_that_are_not_urls_are_left_alone() -> None:
    text = "see ftp://user:pw@host and mailto:a@b?token=x; http:// in the middle is not a URL http://u:p@h"
    assert redact({"content": text}) == {"content": text}


ordinary_names = st.text(alphabet="abcdefghilmnoqruvwxyz_-", max_size=10).filter(
    lambda name: not SENSITIVE.search(name)
)
sensitive_names = st.tuples(
    ordinary_names,
    st.sampled_from(SENSITIVE_WORDS).flatmap(
        lambda word: st.tuples(*(st.sampled_from([c, c.upper()]) for c in word)).map("".join)
    ),
    ordinary_names,
).map("".join)
sensitive_names = sensitive_names.filter(lambda name: name.lower() not in {"max_tokens", "idempotency_key"})
planted_secrets = st.integers(0, 10**9).map(lambda n: f"{PLANTED}{n}")
secret_values = st.one_of(
    planted_secrets,
    st.integers(1, 10**6).map(lambda n: int(f"9{n}")),  # a numeric secret
    st.lists(planted_secrets, min_size=1, max_size=3),
    st.dictionaries(ordinary_names, planted_secrets, min_size=1, max_size=3),
)
ordinary_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz .,", max_size=20),
)
json_with_secrets = st.recursive(
    ordinary_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.builds(
            lambda ordinary, secret: {**ordinary, **secret},
            st.dictionaries(ordinary_names, children, max_size=4),
            st.dictionaries(sensitive_names, secret_values, max_size=2),
        ),
    ),
    max_leaves=25,
)


def without_sensitive(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: without_sensitive(item) for key, item in value.items() if not SENSITIVE.search(key)}
    if isinstance(value, list):
        return [without_sensitive(item) for item in value]
    return value


def sensitive_values(value: Any) -> list[Any]:
    if isinstance(value, dict):
        found = [item for key, item in value.items() if SENSITIVE.search(key)]
        return found + [v for item in value.values() for v in sensitive_values(item)]
    if isinstance(value, list):
        return [v for item in value for v in sensitive_values(item)]
    return []


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_with_secrets)
def test_redact_hides_every_planted_secret_and_changes_nothing_else(value: Any) -> None:
    redacted = redact(value)

    assert PLANTED not in json.dumps(redacted)
    assert all(item == "[redacted]" for item in sensitive_values(redacted))
    assert len(sensitive_values(redacted)) == len(sensitive_values(value))  # no key dropped or renamed
    assert without_sensitive(redacted) == without_sensitive(value)
    assert redact(redacted) == redacted


query_values = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789%.~", min_size=1, max_size=8)


@given(
    user=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8),
    password=planted_secrets,
    params=st.lists(
        st.one_of(
            st.tuples(ordinary_names.filter(bool), query_values, st.just(False)),
            st.tuples(sensitive_names, planted_secrets, st.just(True)),
        ),
        max_size=6,
    ),
)
def test_redacted_urls_keep_no_credentials_and_every_other_parameter(
    user: str, password: str, params: list[tuple[str, str, bool]]
) -> None:
    query = "&".join(f"{name}={value}" for name, value, _ in params)
    url = f"https://{user}:{password}@api.example.com/v1/items?{query}"

    redacted = redact_url(url)

    assert PLANTED not in redacted
    expected = "&".join(f"{name}={'[redacted]' if secret else value}" for name, value, secret in params)
    assert redacted == f"https://[redacted]@api.example.com/v1/items?{expected}".rstrip("?")


# The worker's entry point


@pytest.mark.usefixtures("redis_client")
def test_dead_letter_records_the_failure_in_the_fleet_store() -> None:
    error = ChainExhausted("every provider failed; last: 401 for Bearer abcdefghijklmnop", ATTEMPTS)
    request = ChatRequest.model_validate({**CHAT, "max_tokens": 10})

    dead_letter("task-from-worker", "chat", request, error, error.attempts, 1)

    store = DeadLetterStore(connections.state_redis(), DeadLetterSettings())
    [entry] = store.list()
    assert (entry.task_id, entry.kind, entry.retries) == ("task-from-worker", "chat", 1)
    assert entry.request == {**CHAT, "max_tokens": 10}  # what the producer sent, not every default
    assert entry.error.type == "ChainExhausted"
    assert entry.error.message == "every provider failed; last: 401 for Bearer [redacted]"
    assert list(entry.attempts) == ATTEMPTS


def test_dead_letter_never_raises_and_logs_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(connections, "state_redis", unreachable_redis)

    with caplog.at_level(logging.ERROR, logger="stepper.ops.deadletters"):
        dead_letter("task-1", "chat", {**CHAT, "api_key": "sk-live-0123"}, ValueError("boom"), [], 0)

    [record] = caplog.records
    assert record.getMessage().startswith("could not dead-letter task task-1 (chat): ConnectionError")
    assert "sk-live" not in caplog.text


def unreachable_redis() -> redis.Redis:
    return redis.Redis(port=9, retry=Retry(NoBackoff(), 0))  # refused at once, no retries


# The command line (its store is the fleet's: connections.state_redis(), the test Redis, database 0)


@pytest.fixture
def fleet_store(redis_client: redis.Redis, clock: Clock) -> DeadLetterStore:
    return DeadLetterStore(connections.state_redis(), DeadLetterSettings(), clock=clock)


@pytest.fixture
def fake_submit(monkeypatch: pytest.MonkeyPatch) -> FakeSubmit:
    submit = FakeSubmit()
    monkeypatch.setattr("stepper.producer.submit", submit)
    return submit


def test_cli_list_prints_a_table_newest_first(
    fleet_store: DeadLetterStore, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    older = add(fleet_store, "task-older", kind="ocr")
    clock.now = NOW + 60
    newer = fleet_store.add("task-newer", "chat", CHAT, "InvalidRequest", "messages.0.role: bad\n" + "x" * 200, [], 0)
    fleet_store.record_replay(older, "new-1")

    assert main(["dlq", "list"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "FAILED", "AT", "(UTC)", "KIND", "REPLAYS", "ERROR"]
    assert lines[1].split()[:5] == [newer, "2023-11-14T22:14:20.000Z", "chat", "0", "InvalidRequest:"]
    assert lines[1].endswith("…") and "\n" not in lines[1] and len(lines[1]) < 200
    assert lines[2].split() == [
        older,
        "2023-11-14T22:13:20.000Z",
        "ocr",
        "1",
        "ChainExhausted:",
        "every",
        "provider",
        "failed",
    ]
    assert len(lines) == 3


def test_cli_list_filters_limits_and_speaks_json(
    fleet_store: DeadLetterStore, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = []
    for number, kind in enumerate(["chat", "ocr", "chat"]):
        clock.now = NOW + number
        ids.append(add(fleet_store, f"task-{number}", kind=kind))

    assert main(["dlq", "list", "--kind", "chat", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [entry["id"] for entry in listed] == [ids[2], ids[0]]
    assert listed[0]["request"] == CHAT

    assert main(["dlq", "list", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert ids[2] in out and ids[1] not in out
    assert "1 of 3 shown, newest first; --limit 3 shows them all" in out

    assert main(["dlq", "list", "--kind", "vision"]) == 0
    assert capsys.readouterr().out == "no dead letters of kind vision\n"

    assert main(["dlq", "list", "--limit", "0"]) == 2
    assert "Invalid value for '--limit': 0 is not in the range x>=1" in capsys.readouterr().err


def test_cli_show_prints_the_whole_entry(fleet_store: DeadLetterStore, capsys: pytest.CaptureFixture[str]) -> None:
    entry_id = add(fleet_store, "task-1", request={**CHAT, "api_key": "sk-live-0123"})

    assert main(["dlq", "show", entry_id]) == 0

    out = capsys.readouterr().out
    assert out.startswith("{\n  ")
    shown = json.loads(out)
    assert list(shown) == ["id", "task_id", "kind", "request", "error", "attempts", "retries", "failed_at", "replays"]
    assert shown["request"]["api_key"] == "[redacted]"
    assert shown["attempts"] == ATTEMPTS


@pytest.mark.usefixtures("fleet_store")
def test_cli_show_of_a_missing_entry_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "show", "1-nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stepper: InvalidRequest: no dead letter '1-nope'")
    assert "`stepper dlq list` shows the ids" in err


def test_cli_replay_prints_the_new_task_id(
    fleet_store: DeadLetterStore, fake_submit: FakeSubmit, capsys: pytest.CaptureFixture[str]
) -> None:
    entry_id = add(fleet_store, "task-1")

    assert main(["dlq", "replay", entry_id]) == 0

    assert capsys.readouterr().out == "new-1\n"
    assert fake_submit.calls == [("chat", {**CHAT, "cache": "bypass"})]
    entry = fleet_store.get(entry_id)
    assert entry is not None
    assert [replayed.task_id for replayed in entry.replays] == ["new-1"]


def test_cli_replay_refuses_redacted_requests(
    fleet_store: DeadLetterStore, fake_submit: FakeSubmit, capsys: pytest.CaptureFixture[str]
) -> None:
    entry_id = add(fleet_store, "task-1", request={**CHAT, "api_key": "sk-live-0123"})

    assert main(["dlq", "replay", entry_id]) == 2

    err = capsys.readouterr().err
    assert f"entry {entry_id} had secrets redacted; resubmit it yourself" in err
    assert f"stepper dlq show {entry_id}" in err
    assert fake_submit.calls == []


def test_cli_replay_all_shows_progress_and_skips_what_was_replayed(
    fleet_store: DeadLetterStore, clock: Clock, fake_submit: FakeSubmit, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = []
    for number, kind in enumerate(["chat", "ocr", "chat", "chat"]):
        clock.now = NOW + number
        ids.append(add(fleet_store, f"task-{number}", kind=kind, request={"n": number}))
    fleet_store.record_replay(ids[2], "earlier")

    assert main(["dlq", "replay", "--all", "--kind", "chat"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"replayed 1/2: {ids[0]} -> new-1",
        f"replayed 2/2: {ids[3]} -> new-2",
        "2 of 2 replayed (1 replayed before; replay one again with `stepper dlq replay ID`)",
    ]
    assert fake_submit.calls == [("chat", {"n": 0, "cache": "bypass"}), ("chat", {"n": 3, "cache": "bypass"})]

    assert main(["dlq", "replay", "--all", "--kind", "chat"]) == 0
    assert capsys.readouterr().out.startswith("nothing to replay (3 replayed before")


def test_cli_replay_all_carries_on_past_refusals_and_exits_non_zero(
    fleet_store: DeadLetterStore, clock: Clock, fake_submit: FakeSubmit, capsys: pytest.CaptureFixture[str]
) -> None:
    redacted = add(fleet_store, "task-0", request={**CHAT, "token": "t-1"})
    clock.now = NOW + 1
    fine = add(fleet_store, "task-1")

    assert main(["dlq", "replay", "--all"]) == 1

    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"replayed 2/2: {fine} -> new-1", "1 of 2 replayed"]
    assert f"not replayed 1/2: entry {redacted} had secrets redacted" in captured.err
    assert "1 not replayed (reasons above)" in captured.err


@pytest.mark.parametrize(
    "argv", [["dlq", "replay"], ["dlq", "replay", "1-x", "--all"], ["dlq", "replay", "1-x", "--kind", "chat"]]
)
@pytest.mark.usefixtures("fleet_store")
def test_cli_replay_wants_an_id_or_all(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("stepper: ")


def test_cli_replay_enqueues_on_the_real_broker(fleet_store: DeadLetterStore, redis_client: redis.Redis) -> None:
    """Through stepper.submit itself: the message waits on the chat queue, at normal priority (5)."""
    request = {**CHAT, "temperature": 0.7, "idempotency_key": "order-42"}
    entry_id = add(fleet_store, "task-1", request=request)
    try:
        assert main(["dlq", "replay", entry_id]) == 0
        [raw] = redis_client.lrange("chat\x06\x165", 0, -1)
        message = json.loads(raw)
        kwargs = json.loads(base64.b64decode(message["body"]))[1]
        entry = fleet_store.get(entry_id)
        assert entry is not None
        assert message["headers"]["task"] == "stepper.chat"
        assert message["headers"]["id"] == entry.replays[0].task_id
        assert kwargs == {**CHAT, "temperature": 0.7, "cache": "bypass"}
    finally:
        redis_client.flushall()  # no later fleet on this database may pick the message up


def test_cli_purge_with_yes(fleet_store: DeadLetterStore, capsys: pytest.CaptureFixture[str]) -> None:
    add(fleet_store, "task-1")
    add(fleet_store, "task-2")

    assert main(["dlq", "purge", "--yes"]) == 0

    assert capsys.readouterr().out == "removed 2 dead letters\n"
    assert fleet_store.size() == 0


def test_cli_purge_off_a_terminal_needs_yes(fleet_store: DeadLetterStore, capsys: pytest.CaptureFixture[str]) -> None:
    add(fleet_store, "task-1")

    assert main(["dlq", "purge"]) == 2

    assert "pass --yes to purge" in capsys.readouterr().err
    assert fleet_store.size() == 1


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "status"), [("y\n", 0), ("yes\n", 0), ("n\n", 1), ("\n", 1), ("", 1)])
def test_cli_purge_on_a_terminal_asks_first(
    fleet_store: DeadLetterStore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answer: str,
    status: int,
) -> None:
    add(fleet_store, "task-1")
    monkeypatch.setattr("sys.stdin", Terminal(answer))

    assert main(["dlq", "purge"]) == status

    out = capsys.readouterr().out
    assert out.startswith("remove all 1 dead letters? [y/N] ")
    assert out.endswith("removed 1 dead letters\n" if status == 0 else "nothing removed\n")
    assert fleet_store.size() == status  # 0 left when confirmed, the 1 entry otherwise


@pytest.mark.parametrize(
    "argv", [["dlq", "list"], ["dlq", "show", "1-x"], ["dlq", "replay", "1-x"], ["dlq", "purge", "--yes"]]
)
def test_cli_without_redis_says_what_to_check(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(connections, "state_redis", unreachable_redis)

    assert main(argv) == 1

    assert "Redis unreachable (ConnectionError); check STEPPER_REDIS_URL" in capsys.readouterr().err


def test_replay_of_a_workflows_piece_says_to_resume_the_workflow(store: DeadLetters) -> None:
    pointer = {"workflow_id": "w-1", "piece": "write:1", "resume": "stepper workflow resume w-1"}
    entry_id = store.add("w-1", "workflow.howto", pointer, "ChainExhausted", "every provider failed", [], 0)
    submit = FakeSubmit()

    with pytest.raises(InvalidRequest, match="failed piece; resume it: stepper workflow resume w-1"):
        replay(store, entry_id, submit)
    assert submit.calls == []
