"""The claims of computations in flight, renewed by their process while they run (real Redis)."""

from __future__ import annotations

import logging
import multiprocessing
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stepper.config import current_settings
from stepper.reuse.cache import ResultCache
from stepper.reuse.leases import LeaseKeeper, run_owner
from tests.support.redis_server import RedisServer, free_port

LEASE_S = 0.2


def store(client: redis.Redis) -> ResultCache:
    return ResultCache(client, current_settings().cache)


def test_every_run_has_its_own_owner_name() -> None:
    names = {run_owner("task-1") for _ in range(3)}
    assert len(names) == 3 and all(name.startswith("task-1 ") for name in names)


def test_a_held_claim_outlives_its_lease_and_is_let_go_with_its_block(redis_client: redis.Redis) -> None:
    results, keeper = store(redis_client), LeaseKeeper()
    assert results.claim_flight("k", "run-1", LEASE_S)
    with keeper.holding(results, "k", "run-1", LEASE_S):
        time.sleep(LEASE_S * 4)
        assert redis_client.get("k:flight") == b"run-1"
    time.sleep(LEASE_S * 1.5)  # no longer renewed: it runs out
    assert redis_client.get("k:flight") is None


def test_a_claim_another_run_took_is_left_alone_and_reported_once(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    results, keeper = store(redis_client), LeaseKeeper()
    assert results.claim_flight("k", "run-1", LEASE_S)
    with caplog.at_level(logging.WARNING, "stepper.reuse.leases"), keeper.holding(results, "k", "run-1", LEASE_S):
        redis_client.set("k:flight", b"run-2", px=60_000)  # run-1's lease ran out and run-2 claimed it
        time.sleep(LEASE_S * 3)
        assert redis_client.get("k:flight") == b"run-2"
        assert redis_client.pttl("k:flight") < 60_000 - LEASE_S * 1000  # never renewed for run-1
    assert [record.getMessage() for record in caplog.records] == [
        "the claim of k ran out before it was renewed: an identical request may compute it too"
    ]


def test_an_unreachable_redis_is_reported_and_tried_again(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = store(redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0)))  # fails at once
    keeper = LeaseKeeper()
    with caplog.at_level(logging.WARNING, "stepper.reuse.leases"), keeper.holding(unreachable, "k", "run-1", LEASE_S):
        time.sleep(LEASE_S * 4)
    failures = [record.getMessage() for record in caplog.records]
    assert len(failures) >= 2 and all("could not renew 1 claim(s)" in failure for failure in failures)
    good = store(redis_client)  # the keeper's thread goes on renewing
    assert good.claim_flight("k", "run-2", LEASE_S)
    with keeper.holding(good, "k", "run-2", LEASE_S):
        time.sleep(LEASE_S * 3)
        assert redis_client.get("k:flight") == b"run-2"


def _hold_in_child(port: int) -> None:
    """In a forked child: a claim held past its lease is still there (the child runs its own renewing thread)."""
    client = redis.Redis(port=port)
    results = ResultCache(client, current_settings().cache)
    assert results.claim_flight("child", "run-c", LEASE_S)
    with KEEPER.holding(results, "child", "run-c", LEASE_S):
        time.sleep(LEASE_S * 4)
        raise SystemExit(0 if client.get("child:flight") == b"run-c" else 3)


KEEPER = LeaseKeeper()


def test_a_forked_child_renews_its_own_claims(redis_client: redis.Redis, redis_server: RedisServer) -> None:
    results = store(redis_client)
    assert results.claim_flight("parent", "run-p", LEASE_S)
    with KEEPER.holding(results, "parent", "run-p", LEASE_S):  # the parent's thread runs: the fork copies no thread
        child = multiprocessing.get_context("fork").Process(target=_hold_in_child, args=(redis_server.port,))
        child.start()
        child.join(30)
    assert child.exitcode == 0
