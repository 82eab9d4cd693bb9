"""Admission, backend by backend: the breaker's verdict, the probe lease and the rate-limit buckets."""

from __future__ import annotations

import pybreaker
import pytest
import redis

from stepper.guards.admission import Admission, Limits, RedisGuardBackend
from tests.unit.guards.harness import Harness, count_commands, settle

RESET_S = 30.0
NO_LIMITS = Limits()


def admit(harness: Harness, limits: Limits = NO_LIMITS, tokens: int = 0, provider: str = "p") -> Admission:
    return harness.backend.admit(provider, limits, tokens, RESET_S)


def test_closed_circuit_admits(harness: Harness) -> None:
    admission = admit(harness)
    assert admission == Admission("closed", pybreaker.STATE_CLOSED, 0, 0.0)


def test_requests_per_minute(harness: Harness) -> None:
    limits = Limits(rpm=3)
    assert [admit(harness, limits).wait_s for _ in range(3)] == [0.0, 0.0, 0.0]
    fourth = admit(harness, limits)
    assert fourth.verdict == "closed"
    assert 0 < fourth.wait_s <= 20.0
    # The refused request took nothing: the next one waits no longer than the fourth did.
    fifth = admit(harness, limits)
    assert 0 < fifth.wait_s <= fourth.wait_s


def test_tokens_per_minute(harness: Harness) -> None:
    limits = Limits(tpm=600)
    assert admit(harness, limits, tokens=360).wait_s == 0
    refused = admit(harness, limits, tokens=300)
    assert refused.wait_s > 0
    # 240 tokens are left: the refused request of 300 took none of them.
    assert admit(harness, limits, tokens=240).wait_s == 0
    assert admit(harness, limits, tokens=60).wait_s > 0


def test_a_refused_request_takes_nothing_from_either_bucket(harness: Harness) -> None:
    # The token bucket has room, the request bucket has none: the tokens must stay where they are.
    limits = Limits(rpm=1, tpm=600)
    assert admit(harness, limits, tokens=300).wait_s == 0
    assert admit(harness, limits, tokens=300).wait_s > 0
    assert admit(harness, Limits(tpm=600), tokens=300).wait_s == 0


def test_request_costing_more_than_the_limit_is_capped(harness: Harness) -> None:
    limits = Limits(tpm=100)
    assert admit(harness, limits, tokens=10_000).wait_s == 0
    second = admit(harness, limits, tokens=10_000)
    assert 0 < second.wait_s <= 60.0


def test_no_limits_never_wait(harness: Harness) -> None:
    for _ in range(50):
        assert admit(harness, Limits(), tokens=10**9).wait_s == 0


def test_buckets_are_per_provider(harness: Harness) -> None:
    limits = Limits(rpm=1)
    assert admit(harness, limits, provider="a").wait_s == 0
    assert admit(harness, limits, provider="a").wait_s > 0
    assert admit(harness, limits, provider="b").wait_s == 0


def test_settle_tokens_refunds(harness: Harness) -> None:
    limits = Limits(tpm=600)
    assert admit(harness, limits, tokens=600).wait_s == 0
    assert admit(harness, limits, tokens=300).wait_s > 0
    settle(harness, limits, -300)
    assert admit(harness, limits, tokens=300).wait_s == 0


def test_settle_tokens_charges(harness: Harness) -> None:
    limits = Limits(tpm=600)
    assert admit(harness, limits, tokens=100).wait_s == 0
    settle(harness, limits, 400)
    assert admit(harness, limits, tokens=300).wait_s > 0


def test_settle_tokens_without_a_token_limit_does_nothing(harness: Harness) -> None:
    settle(harness, Limits(), 10_000)
    settle(harness, Limits(rpm=5), -10_000)
    assert admit(harness, Limits(rpm=5)).wait_s == 0


def test_unused_requests_are_given_back_before_the_next_take(harness: Harness) -> None:
    """An admission asked ahead whose call was never made gives its request back with the next admission."""
    limits = Limits(rpm=2)
    assert admit(harness, limits).wait_s == 0
    assert admit(harness, limits).wait_s == 0
    assert admit(harness, limits).wait_s > 0
    assert harness.backend.admit("p", limits, 0, RESET_S, unused=1).wait_s == 0
    assert admit(harness, limits).wait_s > 0


def test_unused_requests_without_a_request_limit_do_nothing(harness: Harness) -> None:
    assert harness.backend.admit("p", Limits(tpm=100), 0, RESET_S, unused=5).wait_s == 0
    assert admit(harness, Limits(rpm=1)).wait_s == 0
    assert admit(harness, Limits(rpm=1)).wait_s > 0


def test_open_circuit_rejects_until_the_reset_timeout(harness: Harness) -> None:
    harness.force("p", pybreaker.STATE_OPEN, 1)
    for _ in range(3):
        assert admit(harness).verdict == "reject"
    assert admit(harness, provider="other").verdict == "closed"


def test_one_probe_after_the_reset_timeout(harness: Harness) -> None:
    harness.force("p", pybreaker.STATE_OPEN, RESET_S + 5)
    probe = admit(harness)
    assert (probe.verdict, probe.state) == ("probe", pybreaker.STATE_OPEN)
    assert admit(harness).verdict == "reject"
    other = harness.another_backend()
    assert other.admit("p", Limits(), 0, RESET_S).verdict == "reject"


def test_half_open_circuit_lets_one_probe_through(harness: Harness) -> None:
    # A probe that never reported back (its worker died) leaves the circuit half-open.
    harness.force("p", pybreaker.STATE_HALF_OPEN, 0)
    assert admit(harness).verdict == "probe"
    assert admit(harness).verdict == "reject"


def test_probe_refused_by_a_rate_limit_gives_the_lease_back(harness: Harness) -> None:
    limits = Limits(rpm=1)
    assert admit(harness, limits).wait_s == 0
    harness.force("p", pybreaker.STATE_OPEN, RESET_S + 5)
    waiting = admit(harness, limits)
    assert waiting.verdict == "probe"
    assert waiting.wait_s > 0
    assert admit(harness).verdict == "probe"
    assert admit(harness).verdict == "reject"


def test_admission_reports_the_failure_count(harness: Harness) -> None:
    storage = harness.backend.breaker_storage("p")
    storage.increment_counter()
    storage.increment_counter()
    assert admit(harness).fail_counter == 2


def test_redis_backend_refuses_a_decoding_client(redis_client: redis.Redis) -> None:
    decoding = redis.Redis(port=redis_client.connection_pool.connection_kwargs["port"], decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses=False"):
            RedisGuardBackend(decoding)
    finally:
        decoding.close()


def test_redis_admission_is_one_command(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = RedisGuardBackend(redis_client)
    backend.admit("p", Limits(rpm=10, tpm=1000), 10, RESET_S)  # loads the script
    sent = count_commands(redis_client, monkeypatch)
    assert backend.admit("p", Limits(rpm=10, tpm=1000), 10, RESET_S).wait_s == 0
    assert sent == ["EVALSHA"]
