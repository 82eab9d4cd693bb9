"""The result cache, single-flight and idempotency, through serve(): each store test runs on both stores, in memory
and on a real Redis (the private test server); what lands in Redis or on its broker is checked on Redis alone."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from stepper.config import current_settings
from stepper.families import FAMILIES, Family
from stepper.guards.admission import Limits, RedisGuardBackend
from stepper.infra import result_riders
from stepper.infra.lua import ScriptCall
from stepper.reuse.cache import Hit, Probe, ResultCache, ResultStore, cache_key, cacheable, idempotency_key
from stepper.reuse.cache_memory import MemoryResultCache
from stepper.reuse.serving import probes_first, serve
from stepper.schemas import ChatOutput, ChatRequest, OcrOutput
from stepper.schemas.common import TaskRequest
from tests.support.redis_server import RedisServer
from tests.unit.guards.harness import count_commands

CHAT = FAMILIES["chat"]
WINDOW = current_settings().cache.windows["chat"]


def chat(**extra: Any) -> ChatRequest:
    return ChatRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], "temperature": 0, **extra})


class Compute:
    """Counts calls; returns a result naming the call, optionally slowly."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls = 0
        self.delay_s = delay_s
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
            number = self.calls
        time.sleep(self.delay_s)
        return {"kind": "chat", "output": {"call": number}, "cached": False}


def test_key_ignores_run_options_but_not_content() -> None:
    settings = current_settings()
    base = cache_key("chat", chat(), settings, ChatOutput)
    assert cache_key("chat", chat(cache="refresh", idempotency_key="k", stream=True), settings, ChatOutput) == base
    assert cache_key("chat", chat(max_tokens=5), settings, ChatOutput) != base
    assert cache_key("chat", chat(), settings, OcrOutput) != base  # another output model version
    hybrid = settings.model_copy(update={"mode": "hybrid"})
    assert cache_key("chat", chat(), hybrid, ChatOutput) != base


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (chat(), True),
        (chat(temperature=0.7), False),
        (ChatRequest.model_validate({"messages": [{"role": "user", "content": "hi"}]}), False),
        (chat(temperature=0.7, cache="use"), True),
        (chat(cache="bypass"), False),
    ],
)
def test_what_is_cacheable(request_: TaskRequest, expected: bool) -> None:
    assert cacheable("chat", request_, current_settings().cache) is expected


def test_a_kind_without_a_window_is_not_cached() -> None:
    settings = current_settings().cache.model_copy(update={"windows": {}})
    assert not cacheable("chat", chat(), settings)


class Clock:
    """Real time (leases run out while threads wait) plus an offset a test moves to age entries."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s


@dataclass
class Harness:
    """One store under test, its clock, and serve() on it."""

    store: ResultStore
    clock: Clock = field(default_factory=Clock)

    def serve(self, request: TaskRequest, task_id: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return serve(CHAT, request, task_id, compute, results=self.store)

    def make_stale(self, request: ChatRequest) -> None:
        """Store the request's entry again as if it had been stored just past its fresh window."""
        key = chat_key(request)
        hit = self.store.get(key)
        assert hit is not None
        self.clock.offset_s -= WINDOW.fresh_s + 1
        try:
            self.store.finish(key, "task-stale", hit.result, WINDOW.fresh_s + WINDOW.stale_s)
        finally:
            self.clock.offset_s += WINDOW.fresh_s + 1


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Harness:
    """Every store test runs on both stores: in memory (no redis-server) and on the private Redis."""
    clock = Clock()
    if request.param == "memory":
        return Harness(MemoryResultCache(clock), clock)
    client: redis.Redis = request.getfixturevalue("redis_client")
    return Harness(ResultCache(client, current_settings().cache, clock), clock)


@dataclass
class Refreshes:
    """Records the refreshes serve() enqueues, instead of sending them to a broker."""

    sent: list[tuple[Family, TaskRequest]] = field(default_factory=list)

    def __call__(self, family: Family, request: TaskRequest, app: Any = None) -> None:
        self.sent.append((family, request))


@pytest.fixture
def refreshes(monkeypatch: pytest.MonkeyPatch) -> Refreshes:
    recorded = Refreshes()
    monkeypatch.setattr("stepper.reuse.submitting.enqueue_refresh", recorded)
    return recorded


def chat_key(request: ChatRequest) -> str:
    return cache_key("chat", request, current_settings(), ChatOutput)


# The store, directly


def test_an_entry_is_fresh_for_its_window_then_stale(cache: Harness) -> None:
    cache.store.finish("k", "task-1", {"n": 1}, ttl_s=WINDOW.fresh_s + WINDOW.stale_s)
    assert cache.store.get("k", WINDOW) == Hit({"n": 1}, fresh=True)
    cache.clock.offset_s += WINDOW.fresh_s + 1
    assert cache.store.get("k", WINDOW) == Hit({"n": 1}, fresh=False)
    assert cache.store.get("k") == Hit({"n": 1}, fresh=True)  # without a window (idempotency): never stale
    assert cache.store.get("other", WINDOW) is None


def test_probe_hands_out_one_claim_per_key_to_one_run(cache: Harness) -> None:
    assert cache.store.probe("k", "task-1 run-1", lease_s=60) == Probe(None, claimed=True)
    assert cache.store.probe("k", "task-2 run-2", lease_s=60) == Probe(None, claimed=False)
    # A second run of the same task (its message put back while the first still runs) does not take it over.
    assert cache.store.probe("k", "task-1 run-3", lease_s=60) == Probe(None, claimed=False)
    assert not cache.store.claim_flight("k", "task-2 run-4", lease_s=60)
    cache.store.finish("k", "task-1", {"n": 1}, ttl_s=60)  # stores and releases the claim
    assert cache.store.probe("k", "task-2 run-2", lease_s=60, window=WINDOW) == Probe(Hit({"n": 1}, True), False)
    assert cache.store.claim_flight("k", "task-2 run-4", lease_s=60)


def test_a_landed_flight_frees_the_claim_and_its_waiters(cache: Harness) -> None:
    assert cache.store.claim_flight("k", "run-1", lease_s=60)
    cache.store.land("k", "run-2")  # not its claim: it stays
    assert not cache.store.claim_flight("k", "run-3", lease_s=60)
    cache.store.land("k", "run-1")
    assert cache.store.wait_for("k", timeout_s=30) is None  # nothing in flight: no wait
    assert cache.store.claim_flight("k", "run-3", lease_s=60)


def test_a_claim_is_renewed_only_while_its_run_holds_it(cache: Harness) -> None:
    assert cache.store.claim_flight("k", "run-1", lease_s=0.3)
    assert cache.store.claim_flight("other", "run-2", lease_s=60)
    assert cache.store.renew([("k", "run-1"), ("other", "run-9"), ("absent", "run-1")], lease_s=60) == [
        True,
        False,
        False,
    ]
    time.sleep(0.5)  # past the first lease: renewed, the claim is still held
    assert not cache.store.claim_flight("k", "run-3", lease_s=60)
    assert cache.store.claim_flight("absent", "run-5", lease_s=60)  # a renewal creates no claim


def test_one_refresh_is_claimed_until_it_is_done(cache: Harness) -> None:
    assert cache.store.claim_refresh("k", ttl_s=60)
    assert not cache.store.claim_refresh("k", ttl_s=60)
    cache.store.refreshed("k")
    assert cache.store.claim_refresh("k", ttl_s=60)


def test_a_waiter_gets_the_result_the_owner_stores(cache: Harness) -> None:
    assert cache.store.claim_flight("k", "task-1", lease_s=60)
    landing = threading.Timer(0.1, cache.store.finish, args=("k", "task-1", {"n": 1}, 60))
    landing.start()
    try:
        assert cache.store.wait_for("k", timeout_s=30) == {"n": 1}
    finally:
        landing.join()


def test_memory_entries_and_claims_run_out_on_its_clock() -> None:
    """Redis runs out keys on its own clock; the memory store on the one it was given."""
    clock = Clock()
    store = MemoryResultCache(clock)
    store.finish("k", "task-1", {"n": 1}, ttl_s=10)
    assert store.claim_flight("k", "task-1", lease_s=10)
    assert store.claim_refresh("k", ttl_s=10)
    clock.offset_s += 9.9
    assert store.get("k") is not None
    assert not store.claim_flight("k", "task-2", lease_s=10)
    clock.offset_s += 0.2
    assert store.get("k") is None
    assert store.claim_flight("k", "task-2", lease_s=10)
    assert store.claim_refresh("k", ttl_s=10)


def test_redis_keeps_a_claim_beside_its_entry_with_its_lease(redis_client: redis.Redis) -> None:
    store = ResultCache(redis_client, current_settings().cache)
    assert store.claim_flight("k", "task-1", lease_s=60)
    assert store.claim_refresh("k", ttl_s=30)
    assert redis_client.get("k:flight") == b"task-1"
    assert 0 < redis_client.pttl("k:flight") <= 60_000
    assert 0 < redis_client.pttl("k:refreshing") <= 30_000


# serve(), on either store


def test_miss_then_fresh_hit(cache: Harness) -> None:
    compute = Compute()
    first = cache.serve(chat(), "task-1", compute)
    second = cache.serve(chat(), "task-2", compute)
    assert compute.calls == 1
    assert first["cached"] is False and second["cached"] is True
    assert second["output"] == first["output"]


def test_stale_hit_is_served_and_refreshed_once(cache: Harness, refreshes: Refreshes) -> None:
    compute = Compute()
    cache.serve(chat(), "task-1", compute)
    cache.make_stale(chat())
    stale = [cache.serve(chat(callback_url="https://example.com/x"), f"task-{n}", compute) for n in range(5)]
    assert compute.calls == 1  # served stale, not recomputed in line
    assert all(result["cached"] and result["output"] == {"call": 1} for result in stale)
    assert refreshes.sent == [(CHAT, chat(callback_url="https://example.com/x"))]  # exactly one refresh
    # The refresh runs: the entry is fresh again, and the next stale period may enqueue a refresh of its own.
    assert cache.serve(chat(cache="refresh"), "task-refresh", compute)["output"] == {"call": 2}
    assert cache.serve(chat(), "task-6", compute)["output"] == {"call": 2}
    assert len(refreshes.sent) == 1
    cache.make_stale(chat())
    cache.serve(chat(), "task-7", compute)
    assert len(refreshes.sent) == 2


def test_refresh_recomputes_and_overwrites(cache: Harness) -> None:
    compute = Compute()
    cache.serve(chat(), "task-1", compute)
    refreshed = cache.serve(chat(cache="refresh"), "task-2", compute)
    assert compute.calls == 2 and refreshed["output"] == {"call": 2}
    assert cache.serve(chat(), "task-3", compute)["output"] == {"call": 2}


def test_bypass_never_reads_or_writes(cache: Harness) -> None:
    compute = Compute()
    cache.serve(chat(), "task-1", compute)
    assert cache.serve(chat(cache="bypass"), "task-2", compute)["output"] == {"call": 2}  # not read
    cache.serve(chat(cache="bypass"), "task-3", compute)
    assert compute.calls == 3
    assert cache.serve(chat(), "task-4", compute)["output"] == {"call": 1}  # not written


def run_together(count: int, call: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
    start = threading.Barrier(count)

    def one(number: int) -> dict[str, Any]:
        start.wait(10)
        return call(number)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_single_flight_computes_once_for_concurrent_identical_requests(cache: Harness) -> None:
    compute = Compute(delay_s=0.3)
    results = run_together(20, lambda n: cache.serve(chat(), f"task-{n}", compute))
    assert compute.calls == 1
    assert {json.dumps(result["output"]) for result in results} == {json.dumps({"call": 1})}
    assert sum(not result["cached"] for result in results) == 1


@pytest.mark.parametrize("request_", [chat(), chat(temperature=0.9, idempotency_key="order-6")], ids=["cached", "key"])
def test_an_abandoned_flight_is_taken_over_and_its_result_kept(cache: Harness, request_: ChatRequest) -> None:
    # A worker claimed the computation and died: its lease runs out, no result lands.
    key = chat_key(request_) if request_.idempotency_key is None else idempotency_key("chat", "order-6")
    assert cache.store.claim_flight(key, "a-worker-that-died", lease_s=0.2)
    compute = Compute()
    assert cache.serve(request_, "task-2", compute)["output"] == {"call": 1}
    again = cache.serve(request_, "task-3", compute)
    assert compute.calls == 1 and again["cached"] and again["output"] == {"call": 1}


def test_a_failed_computation_lets_the_next_request_compute(cache: Harness) -> None:
    def fail() -> dict[str, Any]:
        raise RuntimeError("every provider failed")

    with pytest.raises(RuntimeError):
        cache.serve(chat(), "task-1", fail)
    compute = Compute()
    assert cache.serve(chat(), "task-2", compute)["output"] == {"call": 1}
    assert cache.store.claim_flight(chat_key(chat()), "task-3", lease_s=60)  # task-2 landed its claim too


def test_idempotency_key_runs_once_even_when_not_cacheable(cache: Harness) -> None:
    compute = Compute()
    request = chat(temperature=0.9, idempotency_key="order-42")
    first = cache.serve(request, "task-1", compute)
    again = cache.serve(request, "task-2", compute)
    assert compute.calls == 1 and again["output"] == first["output"] and again["cached"]
    assert cache.store.get(idempotency_key("chat", "order-42")) == Hit(first, fresh=True)
    other = cache.serve(chat(temperature=0.9, idempotency_key="order-43"), "task-3", compute)
    assert compute.calls == 2 and other["output"] == {"call": 2}


def test_in_a_worker_a_cache_entry_waits_for_the_stored_result_and_an_idempotency_entry_does_not(
    redis_client: redis.Redis,
) -> None:
    """Between task_prerun and task_postrun a cache entry rides with the task's stored result (written at
    postrun when nothing stored it); an idempotency entry is written the moment the answer exists, so that a
    worker dying before the store leaves the shortest window for the work to be done twice."""
    clock = Clock()
    cache = Harness(ResultCache(redis_client, current_settings().cache, clock), clock)
    result_riders.hold("task-held")
    try:
        cache.serve(chat(), "task-held", Compute())
        assert cache.store.get(chat_key(chat())) is None  # held for the store
        cache.serve(chat(temperature=0.9, idempotency_key="order-9"), "task-held", Compute())
        assert cache.store.get(idempotency_key("chat", "order-9")) is not None
    finally:
        result_riders.release("task-held")
    assert cache.store.get(chat_key(chat())) is not None


@pytest.mark.parametrize("request_", [chat(), chat(temperature=0.9, idempotency_key="order-7")], ids=["cached", "key"])
def test_a_copy_of_a_task_still_running_waits_for_its_result(
    cache: Harness, request_: ChatRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RabbitMQ puts a running task's message back the moment its worker's connection drops (kombu's Redis
    transport when its connection is reset): the copy has the same task id, and must not call the provider again."""
    computing, release, waiting = threading.Event(), threading.Event(), threading.Event()
    first_compute, copy_compute = Compute(), Compute()

    def first_call() -> dict[str, Any]:
        computing.set()
        assert release.wait(10)
        return first_compute()

    wait_for = cache.store.wait_for

    def waits(key: str, timeout_s: float) -> dict[str, Any] | None:
        waiting.set()
        return wait_for(key, timeout_s)

    monkeypatch.setattr(cache.store, "wait_for", waits)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(cache.serve, request_, "task-1", first_call)
        assert computing.wait(10)
        copy = pool.submit(cache.serve, request_, "task-1", copy_compute)
        waiting.wait(5)  # the copy found the claim held (on the code before, it took it over and computed)
        release.set()
        assert first.result(10)["output"] == copy.result(10)["output"] == {"call": 1}
    assert (first_compute.calls, copy_compute.calls) == (1, 0)
    assert copy.result()["cached"]


@pytest.mark.parametrize("request_", [chat(), chat(temperature=0.9, idempotency_key="order-8")], ids=["cached", "key"])
def test_a_claim_is_kept_while_its_computation_outlasts_its_lease(
    cache: Harness, request_: ChatRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = current_settings()
    short = settings.model_copy(update={"recovery": settings.recovery.model_copy(update={"lease_s": 0.2})})
    monkeypatch.setattr("stepper.reuse.serving.current_settings", lambda: short)
    compute = Compute(delay_s=1.0)  # five leases
    first = threading.Thread(target=cache.serve, args=(request_, "task-1", compute))
    first.start()
    try:
        time.sleep(0.6)  # three leases in: renewed, the claim is still held
        assert cache.serve(request_, "task-2", compute)["output"] == {"call": 1}
    finally:
        first.join()
    assert compute.calls == 1


# serve() on the fleet's cache (no store given): what lands in Redis and on its broker


def make_stale_in_redis(client: redis.Redis, request: ChatRequest) -> None:
    key = chat_key(request)
    entry = json.loads(client.get(key) or b"{}")
    entry["stored_at"] -= WINDOW.fresh_s + 1
    client.set(key, json.dumps(entry))


def test_redis_stale_hit_enqueues_one_refresh_on_the_broker(redis_client: redis.Redis) -> None:
    compute = Compute()
    serve(CHAT, chat(), "task-1", compute)
    make_stale_in_redis(redis_client, chat())
    before = redis_client.llen("chat\x06\x169")
    stale = [serve(CHAT, chat(callback_url="https://example.com/x"), f"task-{n}", compute) for n in range(5)]
    assert compute.calls == 1  # served stale, not recomputed in line
    assert all(result["cached"] and result["output"] == {"call": 1} for result in stale)
    refreshes = redis_client.lrange("chat\x06\x169", 0, -1)[before:]
    assert len(refreshes) == 1  # exactly one refresh, at batch priority (level 9)
    _args, kwargs, _embed = json.loads(base64.b64decode(json.loads(refreshes[0])["body"]))
    assert kwargs["cache"] == "refresh" and "callback_url" not in kwargs


def test_redis_bypass_never_reads_or_writes(redis_client: redis.Redis) -> None:
    compute = Compute()
    serve(CHAT, chat(cache="bypass"), "task-1", compute)
    serve(CHAT, chat(cache="bypass"), "task-2", compute)
    assert compute.calls == 2
    assert redis_client.keys("stepper:cache:*") == []


def test_redis_holds_the_result_of_an_idempotency_key(redis_client: redis.Redis) -> None:
    compute = Compute()
    first = serve(CHAT, chat(temperature=0.9, idempotency_key="order-42"), "task-1", compute)
    assert redis_client.exists(idempotency_key("chat", "order-42"))
    assert json.loads(redis_client.get(idempotency_key("chat", "order-42")) or b"{}")["result"] == first


def test_redis_abandoned_flight_at_its_raw_key_is_taken_over(redis_client: redis.Redis) -> None:
    key = chat_key(chat())
    redis_client.set(f"{key}:flight", b"a-worker-that-died", px=200)  # its lease runs out, no result lands
    compute = Compute()
    assert serve(CHAT, chat(), "task-2", compute)["output"] == {"call": 1}
    assert compute.calls == 1


def test_redis_a_dead_runs_claim_runs_out_and_the_copy_of_its_task_computes(redis_client: redis.Redis) -> None:
    key = idempotency_key("chat", "order-7")
    # task-1's worker died mid-way, its claim is renewed no more; its message comes back
    redis_client.set(f"{key}:flight", b"task-1 a-run-that-died", px=300)
    compute = Compute()
    assert serve(CHAT, chat(idempotency_key="order-7"), "task-1", compute)["output"] == {"call": 1}
    assert compute.calls == 1


# The chain's first admission, asked with the probe


@dataclass
class Admitting:
    """An admission for the probe to ask (as stepper.guards.breaker.AdmissionAhead), recording what it answered."""

    client: redis.Redis
    call: ScriptCall
    answers: list[Any] = field(default_factory=list)

    def answered(self, reply: Any) -> None:
        self.answers.append(reply)


def admitting(client: redis.Redis) -> Admitting:
    backend = RedisGuardBackend(client)
    return Admitting(client, backend.asked_along("p", Limits(rpm=10), 0, 30.0, overspent=0, unused=0))


def test_a_probe_that_claims_the_computation_asks_the_admission_in_its_round_trip(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ResultCache(redis_client, current_settings().cache)
    serve(CHAT, chat(max_tokens=1), "task-0", Compute(), results=store, admitting=admitting(redis_client))  # loads it
    asked = admitting(redis_client)
    sent = count_commands(redis_client, monkeypatch)
    assert serve(CHAT, chat(), "task-1", Compute(), results=store, admitting=asked)["output"] == {"call": 1}
    assert sent == ["EVALSHA"]  # the probe and the admission in one script; the entry is written by a pipeline
    (reply,) = asked.answers
    assert RedisGuardBackend(redis_client).answer(reply).verdict == "closed"
    assert 8 <= float(redis_client.hget("stepper:{p}:rpm", "tokens") or 0) < 8.1  # both probes took a request


def test_a_probe_that_finds_the_result_or_waits_for_it_asks_no_admission(redis_client: redis.Redis) -> None:
    store = ResultCache(redis_client, current_settings().cache)
    serve(CHAT, chat(), "task-1", Compute(), results=store)
    hit = admitting(redis_client)
    assert serve(CHAT, chat(), "task-2", Compute(), results=store, admitting=hit)["cached"]
    busy = chat_key(chat(max_tokens=7))
    redis_client.set(f"{busy}:flight", b"task-3", px=60_000)  # another task computes it
    waiting = admitting(redis_client)
    assert store.probe(busy, "task-4", 60.0, WINDOW, waiting) == Probe(None, claimed=False)
    assert hit.answers == waiting.answers == []
    assert not redis_client.exists("stepper:{p}:rpm")  # nothing was taken


def test_an_idempotency_key_probe_asks_the_admission_too(redis_client: redis.Redis) -> None:
    store = ResultCache(redis_client, current_settings().cache)
    asked = admitting(redis_client)
    serve(CHAT, chat(temperature=0.9, idempotency_key="order-1"), "task-1", Compute(), results=store, admitting=asked)
    assert len(asked.answers) == 1


def test_an_admission_in_another_redis_database_is_left_to_the_call(
    redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    other = redis.Redis(port=redis_server.port, db=3)  # emptied with the others by the redis_client fixture
    store = ResultCache(redis_client, current_settings().cache)
    asked = admitting(other)
    assert serve(CHAT, chat(), "task-1", Compute(), results=store, admitting=asked)["output"] == {"call": 1}
    assert asked.answers == []
    assert not other.exists("stepper:{p}:rpm")


def test_the_memory_store_leaves_the_admission_to_the_call(redis_client: redis.Redis) -> None:
    asked = admitting(redis_client)
    assert serve(CHAT, chat(), "task-1", Compute(), results=MemoryResultCache(), admitting=asked)["output"] == {
        "call": 1
    }
    assert asked.answers == []


class ProbeCounting(MemoryResultCache):
    def __init__(self) -> None:
        super().__init__()
        self.probes = 0

    def probe(self, *args: Any, **kwargs: Any) -> Probe:
        self.probes += 1
        return super().probe(*args, **kwargs)


@pytest.mark.parametrize(
    "extra",
    [
        {},  # no temperature: a new answer each time
        {"temperature": 0.7},
        {"temperature": 0},
        {"temperature": 0, "cache": "refresh"},
        {"temperature": 0, "cache": "bypass"},
        {"cache": "use"},
        {"idempotency_key": "order-2"},
    ],
)
def test_probes_first_says_whether_serve_probes_before_it_computes(extra: dict[str, Any]) -> None:
    """A task whose serve() probes nothing sends its first call's admission at once (stepper.tasks.base)."""
    request = ChatRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], **extra})
    store = ProbeCounting()
    serve(CHAT, request, "task-1", Compute(), results=store)
    assert probes_first(CHAT, request) == (store.probes > 0)
