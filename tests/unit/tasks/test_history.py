"""The attempts of every broker run of a task, kept across retries and numbered by run."""

from __future__ import annotations

from redis import Redis

from stepper.infra import keys
from stepper.tasks import history


def attempt(provider: str, outcome: str) -> dict[str, object]:
    return {"provider": provider, "model": "m", "outcome": outcome, "error": None, "ms": 1.0}


def test_a_first_run_reads_nothing_and_numbers_its_own(redis_client: Redis) -> None:
    assert history.whole(redis_client, "t", 1, [attempt("a", "ok")]) == [{**attempt("a", "ok"), "run": 1}]
    assert redis_client.exists(keys.attempts("t")) == 0


def test_the_final_run_carries_every_earlier_run_in_order(redis_client: Redis) -> None:
    history.keep(redis_client, "t", history.numbered([attempt("a", "retryable_error")], 1), ttl_s=60)
    history.keep(redis_client, "t", history.numbered([attempt("a", "rate_limited"), attempt("b", "skipped")], 2), 60)
    whole = history.whole(redis_client, "t", 3, [attempt("a", "ok")])
    assert [(a["run"], a["provider"], a["outcome"]) for a in whole] == [
        (1, "a", "retryable_error"),
        (2, "a", "rate_limited"),
        (2, "b", "skipped"),
        (3, "a", "ok"),
    ]
    assert redis_client.exists(keys.attempts("t")) == 0  # read once, then dropped


def test_kept_runs_expire_with_the_results(redis_client: Redis) -> None:
    history.keep(redis_client, "t", [], ttl_s=120)
    assert 0 < redis_client.ttl(keys.attempts("t")) <= 120
