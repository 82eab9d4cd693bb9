"""ProviderGuard: admission, then pybreaker over the backend's shared state, around one provider call."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pybreaker
import pytest
import redis
from pydantic import BaseModel
from redis.backoff import NoBackoff
from redis.retry import Retry

from stepper.contracts import Reply
from stepper.errors import (
    AuthError,
    Cancelled,
    CircuitOpen,
    ConfigError,
    ContentRejected,
    InvalidRequest,
    RateLimited,
    StepperError,
    Unavailable,
    UnprocessableInput,
    UnsupportedInput,
)
from stepper.guards.admission import Limits, MemoryGuardBackend, RedisGuardBackend
from stepper.guards.breaker import AdmissionAhead, ProviderGuard, is_not_provider_failure
from stepper.infra import metrics
from stepper.reuse.cache import ResultCache
from stepper.schemas import ChatOutput
from stepper.settings import BreakerSettings, CacheSettings
from tests.support.redis_server import free_port
from tests.unit.guards.harness import Harness, breaker_key, count_commands, settle

BREAKER = BreakerSettings(fail_max=2, reset_timeout_s=30.0)
OK = Reply(ChatOutput.model_validate({"message": {"content": "ok"}, "finish_reason": "stop"}))


class Calls:
    """A provider stand-in: counts calls, then answers OK or raises what it was given."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.count = 0
        self.error = error
        self._lock = threading.Lock()

    def __call__(self) -> Reply[ChatOutput]:
        with self._lock:
            self.count += 1
        if self.error is not None:
            raise self.error
        return OK


def guard_over(harness: Harness, max_wait_s: float = 0, **options: Any) -> ProviderGuard:
    return ProviderGuard(harness.backend, BREAKER, max_wait_s=max_wait_s, **options)


def open_circuit(guard: ProviderGuard, provider: str = "p") -> None:
    failing = Calls(Unavailable("503"))
    for _ in range(BREAKER.fail_max):
        with pytest.raises(Unavailable):
            guard.call(provider, Limits(), 0, failing)
    assert failing.count == BREAKER.fail_max


# --- the breaker -------------------------------------------------------------------------------------------------


def test_success_passes_the_reply_through(harness: Harness) -> None:
    fn = Calls()
    assert guard_over(harness).call("p", Limits(), 0, fn) is OK
    assert fn.count == 1
    assert harness.state("p") == pybreaker.STATE_CLOSED


def test_opens_after_fail_max_failures_and_stops_calling(harness: Harness) -> None:
    guard = guard_over(harness)
    open_circuit(guard)
    assert harness.state("p") == pybreaker.STATE_OPEN
    fn = Calls()
    with pytest.raises(CircuitOpen) as raised:
        guard.call("p", Limits(), 0, fn)
    assert fn.count == 0
    assert "p" in str(raised.value)
    assert raised.value.retry_after_s is None


def test_open_state_is_visible_in_redis(redis_client: redis.Redis) -> None:
    client = redis_client
    open_circuit(ProviderGuard(RedisGuardBackend(client), BREAKER, max_wait_s=0), "openai")
    assert client.get("stepper:{openai}:breaker:pybreaker:state") == b"open"
    assert client.get(breaker_key("openai", "fail_counter")) == str(BREAKER.fail_max).encode()
    assert int(client.get(breaker_key("openai", "opened_at")) or 0) <= time.time()


def test_the_open_circuit_is_fleet_wide(harness: Harness) -> None:
    open_circuit(guard_over(harness))
    elsewhere = ProviderGuard(harness.another_backend(), BREAKER, max_wait_s=0)
    fn = Calls()
    with pytest.raises(CircuitOpen):
        elsewhere.call("p", Limits(), 0, fn)
    assert fn.count == 0


def test_failures_are_counted_fleet_wide(harness: Harness) -> None:
    guards = [guard_over(harness), ProviderGuard(harness.another_backend(), BREAKER, max_wait_s=0)]
    for guard in guards[: BREAKER.fail_max]:
        with pytest.raises(Unavailable):
            guard.call("p", Limits(), 0, Calls(Unavailable("503")))
    assert harness.state("p") == pybreaker.STATE_OPEN
    for guard in guards:
        with pytest.raises(CircuitOpen):
            guard.call("p", Limits(), 0, Calls())


def test_breakers_are_per_provider(harness: Harness) -> None:
    guard = guard_over(harness)
    open_circuit(guard, "a")
    fn = Calls()
    assert guard.call("b", Limits(), 0, fn) is OK
    assert fn.count == 1


def test_failures_must_be_consecutive(harness: Harness) -> None:
    guard = guard_over(harness)
    for _ in range(3):
        with pytest.raises(Unavailable):
            guard.call("p", Limits(), 0, Calls(Unavailable("503")))
        guard.call("p", Limits(), 0, Calls())
    assert harness.state("p") == pybreaker.STATE_CLOSED


@pytest.mark.parametrize(
    "error",
    [
        AuthError("401"),
        InvalidRequest("bad"),
        ContentRejected("refused"),
        UnsupportedInput("no such model"),
        UnprocessableInput("tesseract failed on this input (RuntimeError: ...)"),
        RateLimited("429 without a hint"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_permanent_errors_never_open_the_circuit(harness: Harness, error: StepperError) -> None:
    guard = guard_over(harness)
    fn = Calls(error)
    for _ in range(BREAKER.fail_max * 3):
        with pytest.raises(type(error)):
            guard.call("p", Limits(), 0, fn)
    assert fn.count == BREAKER.fail_max * 3
    assert harness.state("p") == pybreaker.STATE_CLOSED


@pytest.mark.parametrize(
    ("error", "excluded"),
    [
        (Unavailable("503"), False),
        (RateLimited("429", 1.0), True),  # busy is not broken: a Retry-After becomes a cooldown instead
        (UnprocessableInput("espeak-ng crashed on this text"), True),
        (KeyError("choices"), False),
        (CircuitOpen("open"), True),
        (AuthError("401"), True),
        (InvalidRequest("bad"), True),
        (StepperError("ours"), True),
    ],
)
def test_which_errors_count_against_the_provider(error: BaseException, excluded: bool) -> None:
    assert is_not_provider_failure(error) is excluded


@pytest.mark.parametrize("shared_guard", [True, False], ids=["one-guard", "guard-per-caller"])
def test_one_probe_after_the_reset_timeout(harness: Harness, shared_guard: bool) -> None:
    guard = guard_over(harness)
    open_circuit(guard)
    harness.age_opening("p", BREAKER.reset_timeout_s + 5)
    callers = 8
    release = threading.Event()
    start = threading.Barrier(callers)
    probes = Calls()

    def probe() -> Reply[ChatOutput]:
        probes()
        assert release.wait(10)
        return OK

    def caller() -> str:
        own = guard if shared_guard else ProviderGuard(harness.another_backend(), BREAKER, max_wait_s=0)
        start.wait(10)
        try:
            own.call("p", Limits(), 0, probe)
        except CircuitOpen:
            return "rejected"
        return "probed"

    with ThreadPoolExecutor(callers) as pool:
        futures = [pool.submit(caller) for _ in range(callers)]
        try:
            deadline = time.monotonic() + 10
            while sum(future.done() for future in futures) < callers - 1 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            release.set()
        outcomes = sorted(future.result() for future in futures)
    assert outcomes == ["probed"] + ["rejected"] * (callers - 1)
    assert probes.count == 1
    assert harness.state("p") == pybreaker.STATE_CLOSED


def test_successful_probe_closes_the_circuit(harness: Harness) -> None:
    guard = guard_over(harness)
    open_circuit(guard)
    harness.age_opening("p", BREAKER.reset_timeout_s + 5)
    assert guard.call("p", Limits(), 0, Calls()) is OK
    assert harness.state("p") == pybreaker.STATE_CLOSED
    fn = Calls()
    for _ in range(5):
        assert guard.call("p", Limits(), 0, fn) is OK
    assert fn.count == 5
    # The failure count starts again from zero: one failure does not reopen it.
    with pytest.raises(Unavailable):
        guard.call("p", Limits(), 0, Calls(Unavailable("503")))
    assert harness.state("p") == pybreaker.STATE_CLOSED


def test_failed_probe_reopens_the_circuit(harness: Harness) -> None:
    guard = guard_over(harness)
    open_circuit(guard)
    harness.age_opening("p", BREAKER.reset_timeout_s + 5)
    probe = Calls(Unavailable("still 503"))
    with pytest.raises(Unavailable):
        guard.call("p", Limits(), 0, probe)
    assert probe.count == 1
    assert harness.state("p") == pybreaker.STATE_OPEN
    fn = Calls()
    for _ in range(3):
        with pytest.raises(CircuitOpen):
            guard.call("p", Limits(), 0, fn)
    assert fn.count == 0


def test_probe_on_another_guard_closes_the_circuit_for_all(harness: Harness) -> None:
    first = guard_over(harness)
    open_circuit(first)
    harness.age_opening("p", BREAKER.reset_timeout_s + 5)
    second = ProviderGuard(harness.another_backend(), BREAKER, max_wait_s=0)
    assert second.call("p", Limits(), 0, Calls()) is OK
    fn = Calls()
    assert first.call("p", Limits(), 0, fn) is OK
    assert fn.count == 1


def test_calls_overlap(harness: Harness) -> None:
    """pybreaker holds a lock for the whole call; a breaker per call in flight keeps a threads pool concurrent."""
    guard = guard_over(harness)
    lock = threading.Lock()
    running = 0
    most = 0

    def slow() -> Reply[ChatOutput]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.2)
        with lock:
            running -= 1
        return OK

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: guard.call("p", Limits(), 0, slow), range(8)))
    assert replies == [OK] * 8
    assert most > 1


# --- rate limits -------------------------------------------------------------------------------------------------


def test_rate_limited_when_the_bucket_is_empty(harness: Harness) -> None:
    guard = guard_over(harness, max_wait_s=0)
    fn = Calls()
    guard.call("p", Limits(rpm=1), 0, fn)
    with pytest.raises(RateLimited) as raised:
        guard.call("p", Limits(rpm=1), 0, fn)
    assert fn.count == 1
    assert raised.value.retry_after_s is not None
    assert raised.value.retry_after_s > 0
    assert "p is at its fleet-wide limit (1 requests/min" in str(raised.value)


def test_a_wait_beyond_max_wait_is_not_slept(harness: Harness) -> None:
    sleeps: list[float] = []
    guard = guard_over(harness, max_wait_s=5, sleep=sleeps.append)
    guard.call("p", Limits(rpm=1), 0, Calls())
    with pytest.raises(RateLimited):
        guard.call("p", Limits(rpm=1), 0, Calls())
    assert sleeps == []


def test_a_short_wait_is_slept_then_the_call_is_made(harness: Harness) -> None:
    limits = Limits(tpm=60)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        settle(harness, limits, -60)  # the minute passes, as far as the bucket knows

    guard = guard_over(harness, max_wait_s=600, sleep=sleep)
    guard.call("p", limits, 60, Calls())
    fn = Calls()
    assert guard.call("p", limits, 60, fn) is OK
    assert fn.count == 1
    assert len(sleeps) == 1
    assert 0 < sleeps[0] <= 60


def test_reported_usage_settles_the_token_estimate(harness: Harness) -> None:
    limits = Limits(tpm=600)
    guard = guard_over(harness)
    used_little = Reply(OK.output, {"input_tokens": 40, "output_tokens": 60})
    guard.call("p", limits, 500, lambda: used_little)
    # 500 were reserved, 100 used: 500 are free again, so another reservation of 500 fits.
    assert guard.call("p", limits, 500, Calls()) is OK


def test_a_cancelled_call_settles_the_tokens_it_used(harness: Harness) -> None:
    limits = Limits(tpm=600)
    guard = guard_over(harness, max_wait_s=0)

    def cut_short() -> Reply[BaseModel]:
        cancelled = Cancelled("revoked mid-stream")
        cancelled.partial_usage = {"input_tokens": 50, "output_tokens": 50}
        raise cancelled

    with pytest.raises(Cancelled):
        guard.call("p", limits, 500, cut_short)
    # 500 were reserved, 100 used before the cut: 500 are free again.
    assert guard.call("p", limits, 500, Calls()) is OK
    assert harness.state("p") == pybreaker.STATE_CLOSED  # a cancellation says nothing about the provider


def test_a_cancelled_call_without_an_estimate_keeps_its_reservation(harness: Harness) -> None:
    guard = guard_over(harness, max_wait_s=0)

    def cut_short() -> Reply[BaseModel]:
        raise Cancelled("revoked before any usage was known")

    with pytest.raises(Cancelled):
        guard.call("p", Limits(tpm=600), 500, cut_short)
    with pytest.raises(RateLimited):
        guard.call("p", Limits(tpm=600), 500, Calls())


def test_a_probe_that_is_rate_limited_does_not_keep_the_lease(harness: Harness) -> None:
    guard = guard_over(harness, max_wait_s=0)
    guard.call("p", Limits(rpm=1), 0, Calls())
    open_circuit(guard)
    harness.age_opening("p", BREAKER.reset_timeout_s + 5)
    with pytest.raises(RateLimited):
        guard.call("p", Limits(rpm=1), 0, Calls())
    assert guard.call("p", Limits(), 0, Calls()) is OK
    assert harness.state("p") == pybreaker.STATE_CLOSED


# --- Redis specifics --------------------------------------------------------------------------------------------


def test_a_successful_call_is_one_redis_command(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    guard = ProviderGuard(RedisGuardBackend(redis_client), BREAKER, max_wait_s=0)
    guard.call("p", Limits(), 0, Calls())  # loads the script and builds a breaker and its storage
    sent = count_commands(redis_client, monkeypatch)
    redis_client.config_resetstat()
    sent.clear()
    for _ in range(3):
        assert guard.call("p", Limits(), 0, Calls()) is OK
    assert sent == ["EVALSHA"] * 3
    stats = redis_client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 3
    assert "cmdstat_set" not in stats
    assert "cmdstat_incr" not in stats


def test_a_call_from_a_new_thread_is_still_one_redis_command(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gevent worker runs every task in a greenlet of its own: a breaker built per thread (or greenlet) would
    write pybreaker's three keys (SETNX) on every call."""
    guard = ProviderGuard(RedisGuardBackend(redis_client), BREAKER, max_wait_s=0)
    guard.call("p", Limits(), 0, Calls())
    sent = count_commands(redis_client, monkeypatch)
    sent.clear()
    for _ in range(3):
        caller = threading.Thread(target=guard.call, args=("p", Limits(), 0, Calls()))
        caller.start()
        caller.join()
    assert sent == ["EVALSHA"] * 3


def test_only_a_processs_first_breaker_of_a_provider_writes_its_keys(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's first calls each build a breaker (one per call at once): pybreaker's storage would write its
    three keys (SETNX) and the breaker read the state (GET) before each of those calls."""
    guard = ProviderGuard(RedisGuardBackend(redis_client), BREAKER, max_wait_s=0)
    guard.call("p", Limits(), 0, Calls())  # loads the script
    sent = count_commands(redis_client, monkeypatch)
    sent.clear()
    assert guard.call("q", Limits(), 0, Calls()) is OK  # a provider never called: the process's first breaker
    assert sent == ["EVALSHA", "SETNX", "SETNX", "SETNX"]
    assert redis_client.get(breaker_key("q", "state")) == b"closed"  # `stepper status` lists it
    sent.clear()
    release, entered = threading.Event(), threading.Event()

    def held() -> Reply[ChatOutput]:
        entered.set()
        release.wait(timeout=10)
        return OK

    with ThreadPoolExecutor(1) as pool:
        holding = pool.submit(guard.call, "q", Limits(), 0, held)  # holds the idle breaker
        assert entered.wait(timeout=10)
        assert guard.call("q", Limits(), 0, Calls()) is OK  # so this call builds a second one
        release.set()
        assert holding.result() is OK
    assert sent == ["EVALSHA", "EVALSHA"]
    open_circuit(guard, "q")
    assert redis_client.get(breaker_key("q", "state")) == b"open"


def test_breakers_are_built_for_calls_at_once_not_for_each_call(harness: Harness) -> None:
    used: set[pybreaker.CircuitBreaker] = set()

    class Seen(pybreaker.CircuitBreakerListener):
        def before_call(self, cb: pybreaker.CircuitBreaker, func: Any, *args: Any, **kwargs: Any) -> None:
            used.add(cb)

    guard = guard_over(harness, listeners=(Seen(),))
    release = threading.Event()
    entered = threading.Barrier(5)  # the four calls and this thread

    def held() -> Reply[ChatOutput]:
        entered.wait(timeout=10)
        release.wait(timeout=10)
        return OK

    with ThreadPoolExecutor(4) as pool:
        waiting = [pool.submit(guard.call, "p", Limits(), 0, held) for _ in range(4)]
        entered.wait(timeout=10)  # all four calls hold a breaker at once
        release.set()
        assert [future.result() for future in waiting] == [OK] * 4
    for _ in range(10):
        caller = threading.Thread(target=guard.call, args=("p", Limits(), 0, Calls()))
        caller.start()
        caller.join()
    guard.call("q", Limits(), 0, Calls())
    assert sorted(str(breaker.name) for breaker in used) == ["p"] * 4 + ["q"]


def test_token_settlement_rides_on_the_next_admission(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = ProviderGuard(RedisGuardBackend(redis_client), BREAKER, max_wait_s=0)
    limits = Limits(tpm=1000)
    used_more = Reply(OK.output, {"input_tokens": 300, "output_tokens": 300})
    guard.call("p", limits, 100, lambda: used_more)  # 100 reserved, 600 used: 500 still owed
    sent = count_commands(redis_client, monkeypatch)
    assert guard.call("p", limits, 100, Calls()) is OK
    assert sent == ["EVALSHA"]  # the 500 were settled inside the admission script
    left = float(redis_client.hget("stepper:{p}:tpm", "tokens") or 0)
    assert left < 1000 - 100 - 600 + 5  # both calls' real use is charged (plus a few ms of refill)


# --- an admission asked ahead, with the cache probe ------------------------------------------------------------


def probe_asking(redis_client: redis.Redis, ahead: AdmissionAhead, key: str = "entry") -> bool:
    """Probe the cache on ``redis_client`` for ``key`` as a task would, asking ``ahead`` with it; True on a hit."""
    cache = ResultCache(redis_client, CacheSettings())
    return cache.probe(key, "task-1", 60.0, admitting=ahead).hit is not None


def loaded_guard_ahead(redis_client: redis.Redis) -> tuple[ProviderGuard, AdmissionAhead]:
    """A guard that has called ``p`` once (its admission script loaded, a breaker built), and the admission of
    its next call at 100 requests a minute."""
    guard = ProviderGuard(RedisGuardBackend(redis_client), BREAKER, max_wait_s=0)
    guard.call("p", Limits(rpm=100), 0, Calls())
    ahead = guard.ahead("p", Limits(rpm=100), 0)
    assert ahead is not None
    return guard, ahead


def test_an_admission_asked_with_the_probe_is_not_asked_again(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard, ahead = loaded_guard_ahead(redis_client)
    sent = count_commands(redis_client, monkeypatch)
    assert not probe_asking(redis_client, ahead)
    sent.clear()
    fn = Calls()
    assert guard.call("p", Limits(rpm=100), 0, fn, ahead) is OK
    assert fn.count == 1
    assert sent == []  # admitted already: the call itself costs no round trip
    guard.release(ahead)
    assert guard.call("p", Limits(rpm=100), 0, Calls(), ahead) is OK  # used once: the next call asks again
    assert sent == ["EVALSHA"]


def test_an_admission_asked_ahead_but_not_used_gives_its_request_and_tokens_back(redis_client: redis.Redis) -> None:
    limits = Limits(rpm=2, tpm=1000)
    guard = ProviderGuard(RedisGuardBackend(redis_client), BREAKER, max_wait_s=0)
    ahead = guard.ahead("p", limits, 600)
    assert ahead is not None
    assert not probe_asking(redis_client, ahead)
    assert ahead.admission is not None
    assert ahead.admission.verdict == "closed"
    guard.release(ahead)  # the task was cancelled before its call, say
    # Both requests and the tokens are there again: without the refund the second call would wait.
    assert guard.call("p", limits, 600, Calls()) is OK
    assert guard.call("p", limits, 100, Calls()) is OK
    with pytest.raises(RateLimited):
        guard.call("p", limits, 100, Calls())


def test_an_admission_the_probe_did_not_ask_leaves_what_it_owed_to_the_next(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache hit asks no admission: the token settlement the admission would have carried is not lost."""
    guard = ProviderGuard(RedisGuardBackend(redis_client), BREAKER, max_wait_s=0)
    limits = Limits(tpm=1000)
    used_more = Reply(OK.output, {"input_tokens": 300, "output_tokens": 300})
    guard.call("p", limits, 100, lambda: used_more)  # 500 owed
    redis_client.set("entry", '{"result": {"cached": "answer"}, "stored_at": 0}')
    ahead = guard.ahead("p", limits, 100)
    assert ahead is not None
    assert probe_asking(redis_client, ahead)
    assert ahead.admission is None
    guard.release(ahead)
    sent = count_commands(redis_client, monkeypatch)
    assert guard.call("p", limits, 100, Calls()) is OK
    assert sent == ["EVALSHA"]
    left = float(redis_client.hget("stepper:{p}:tpm", "tokens") or 0)
    assert left < 1000 - 100 - 600 + 5  # the 500 owed were settled with this admission


def test_an_admission_ahead_that_must_wait_is_waited_out_by_the_call(redis_client: redis.Redis) -> None:
    limits = Limits(rpm=1)
    sleeps: list[float] = []
    guard = ProviderGuard(RedisGuardBackend(redis_client), BREAKER, max_wait_s=120, sleep=sleeps.append)
    guard.call("p", limits, 0, Calls())
    ahead = guard.ahead("p", limits, 0)
    assert ahead is not None
    assert not probe_asking(redis_client, ahead)
    assert ahead.admission is not None
    assert ahead.admission.wait_s > 0
    redis_client.delete("stepper:{p}:rpm")  # the minute passes while the call waits
    assert guard.call("p", limits, 0, Calls(), ahead) is OK
    assert len(sleeps) == 1
    guard.release(ahead)
    assert redis_client.hget("stepper:{p}:rpm", "tokens") == b"0"  # nothing given back: the wait took nothing


def test_an_admission_ahead_answers_only_the_call_it_was_asked_for(redis_client: redis.Redis) -> None:
    guard = ProviderGuard(RedisGuardBackend(redis_client), BREAKER, max_wait_s=0)
    redis_client.set(breaker_key("p", "state"), "open")
    redis_client.set(breaker_key("p", "opened_at"), int(time.time()))
    ahead = guard.ahead("p", Limits(), 0)
    assert ahead is not None
    assert not probe_asking(redis_client, ahead)
    assert ahead.take("q") is None  # another provider's call asks for itself
    with pytest.raises(CircuitOpen):
        guard.call("p", Limits(), 0, Calls(), ahead)


def test_memory_guards_ask_nothing_ahead() -> None:
    assert ProviderGuard(MemoryGuardBackend(), BREAKER, max_wait_s=0).ahead("p", Limits(rpm=1), 0) is None


# --- an admission asked now, for a task whose first call no probe precedes -------------------------------------


def test_an_admission_asked_now_is_read_by_its_call_and_not_asked_again(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard, ahead = loaded_guard_ahead(redis_client)
    sent = count_commands(redis_client, monkeypatch)
    ahead.ask_now()
    assert sent == ["EVALSHA"]
    fn = Calls()
    assert guard.call("p", Limits(rpm=100), 0, fn, ahead) is OK
    guard.release(ahead)
    assert fn.count == 1
    assert sent == ["EVALSHA"]  # the call read the answer sent for it
    assert float(redis_client.hget("stepper:{p}:rpm", "tokens") or 0) == pytest.approx(98, abs=0.5)


def test_an_admission_asked_now_and_never_used_is_read_and_given_back(redis_client: redis.Redis) -> None:
    limits = Limits(rpm=1)
    guard = ProviderGuard(RedisGuardBackend(redis_client), BREAKER, max_wait_s=0)
    ahead = guard.ahead("p", limits, 0)
    assert ahead is not None
    ahead.ask_now()
    guard.release(ahead)  # a redelivered task found its result stored, say
    assert not redis_client.connection_pool._in_use_connections  # the reply was read: its connection is back
    assert guard.call("p", limits, 0, Calls()) is OK  # the minute's one request was given back


def test_an_admission_asked_now_of_an_unreachable_redis_lets_the_call_through() -> None:
    unreachable = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    guard = ProviderGuard(RedisGuardBackend(unreachable), BREAKER, max_wait_s=0)
    ahead = guard.ahead("p", Limits(rpm=1), 0)
    assert ahead is not None
    ahead.ask_now()
    fn = Calls()
    assert guard.call("p", Limits(rpm=1), 0, fn, ahead) is OK  # the guards fail open, as when asked at the call
    guard.release(ahead)
    assert fn.count == 1


def test_fails_open_when_redis_is_unreachable() -> None:
    client = redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))
    guard = ProviderGuard(RedisGuardBackend(client), BREAKER, max_wait_s=0)
    fn = Calls()
    for _ in range(3):
        assert guard.call("p", Limits(rpm=1, tpm=10), 10, fn) is OK
    assert fn.count == 3
    failing = Calls(Unavailable("503"))
    for _ in range(BREAKER.fail_max + 2):
        with pytest.raises(Unavailable):
            guard.call("p", Limits(), 0, failing)
    assert failing.count == BREAKER.fail_max + 2
    client.close()


def test_redis_failing_mid_call_keeps_the_provider_error(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = ProviderGuard(RedisGuardBackend(redis_client), BREAKER, max_wait_s=0)
    guard.call("p", Limits(), 0, Calls())

    def unreachable(*args: Any, **options: Any) -> Any:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(redis_client, "incr", unreachable)
    with pytest.raises(Unavailable):
        guard.call("p", Limits(), 0, Calls(Unavailable("503")))


def test_a_retry_after_keeps_every_caller_away_for_that_long(harness: Harness) -> None:
    """A 429 with Retry-After, seen by one worker, is a fleet-wide cooldown: others skip the provider without
    calling it, and its breaker stays closed."""
    first = guard_over(harness, max_wait_s=0)
    with pytest.raises(RateLimited):
        first.call("p", Limits(), 0, Calls(RateLimited("429 slow down", 30.0)))
    elsewhere = ProviderGuard(harness.another_backend(), BREAKER, max_wait_s=0)
    fn = Calls()
    with pytest.raises(RateLimited, match="asked the fleet to wait") as raised:
        elsewhere.call("p", Limits(), 0, fn)
    assert fn.count == 0
    assert 25 < (raised.value.retry_after_s or 0) <= 30
    assert harness.state("p") == pybreaker.STATE_CLOSED
    assert elsewhere.call("other", Limits(), 0, Calls()) is OK  # only that provider cools down


def test_a_cooldown_is_capped_and_never_shortened(harness: Harness) -> None:
    guard = guard_over(harness, max_wait_s=0, max_cooldown_s=60.0)
    with pytest.raises(RateLimited):
        guard.call("p", Limits(), 0, Calls(RateLimited("429", 86_400.0)))  # a vendor asking for a day
    with pytest.raises(RateLimited):
        guard.call("p", Limits(), 0, Calls(RateLimited("429", 1.0)))  # never reached: still cooling down
    with pytest.raises(RateLimited) as raised:
        guard.call("p", Limits(), 0, Calls())
    assert 55 < (raised.value.retry_after_s or 0) <= 60


class RefusingBackend(MemoryGuardBackend):
    """Admission raises what a Redis may answer: ``error`` on every call."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def admit(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


def test_only_an_unreachable_redis_lets_calls_through_unguarded_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    guard = ProviderGuard(RefusingBackend(redis.ConnectionError("Connection refused")), BREAKER, max_wait_s=0)
    before = metrics.GUARD_FAIL_OPEN.labels("p")._value.get()
    fn = Calls()
    for _ in range(5):
        assert guard.call("p", Limits(rpm=1), 0, fn) is OK
    assert fn.count == 5
    assert metrics.GUARD_FAIL_OPEN.labels("p")._value.get() - before == 5
    assert caplog.text.count("guard state unreachable") == 1


def test_a_redis_refusing_the_guard_fails_the_call_and_says_why() -> None:
    refusal = redis.exceptions.NoPermissionError("this user has no permissions to run the 'evalsha' command")
    guard = ProviderGuard(RefusingBackend(refusal), BREAKER, max_wait_s=0)
    fn = Calls()
    with pytest.raises(ConfigError, match="may run scripts") as raised:
        guard.call("p", Limits(), 0, fn)
    assert fn.count == 0  # nothing went through unguarded
    assert "evalsha" in str(raised.value)


def test_the_start_up_check_names_a_redis_the_guards_cannot_use(redis_client: redis.Redis) -> None:
    RedisGuardBackend(redis_client).check()  # a Redis that lets the guards work passes
    user, password = "guard-check-noscripts", "guard-check-password"
    redis_client.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all", "-@scripting"]
    )
    try:
        port = redis_client.connection_pool.connection_kwargs["port"]
        limited = redis.Redis(port=port, username=user, password=password)
        with pytest.raises(ConfigError, match="allowed to run scripts"):
            RedisGuardBackend(limited).check()
    finally:
        redis_client.acl_deluser(user)


def test_an_admission_that_cannot_be_sent_now_is_left_to_the_call(redis_client: redis.Redis) -> None:
    full = redis.Redis(port=redis_client.connection_pool.connection_kwargs["port"], max_connections=1)
    guard = ProviderGuard(RedisGuardBackend(full), BREAKER, max_wait_s=0)
    held = full.connection_pool.get_connection()  # the pool's one connection is in use: no send goes out
    ahead = guard.ahead("p", Limits(rpm=5), 0)
    assert ahead is not None
    ahead.ask_now()
    full.connection_pool.release(held)
    fn = Calls()
    assert guard.call("p", Limits(rpm=5), 0, fn, ahead) is OK  # asked at the call, on the connection now free
    guard.release(ahead)
    assert fn.count == 1
    assert float(full.hget("stepper:{p}:rpm", "tokens") or 0) == pytest.approx(4, abs=0.5)
