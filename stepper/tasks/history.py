"""The attempts of every broker run of a task, so that its final result or error tells the whole story.

A run that ends in a retry through the broker keeps its attempts in Redis (one JSON list per run, expiring
with the results); the run that ends the task reads them back and puts them before its own. Each attempt
carries its ``run`` number: 1 for the first run, one more per retry (Celery's ``request.retries + 1``). A
run cut short by a crashed worker leaves no attempts behind: its number is simply missing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from redis import Redis

from stepper.infra import keys

Attempts = list[dict[str, Any]]


def numbered(attempts: Sequence[dict[str, Any]], run: int) -> Attempts:
    """``attempts`` (JSON objects) marked as belonging to broker run ``run``."""
    return [{**attempt, "run": run} for attempt in attempts]


def keep(client: Redis, task_id: str, attempts: Attempts, ttl_s: float) -> None:
    """Keep one run's attempts (already numbered) for the runs after it."""
    key = keys.attempts(task_id)
    pipe = client.pipeline(transaction=False)
    pipe.rpush(key, json.dumps(attempts))
    pipe.expire(key, int(ttl_s))
    pipe.execute()


def whole(client: Redis, task_id: str, run: int, attempts: Sequence[dict[str, Any]]) -> Attempts:
    """The attempts of the task's earlier runs, then this run's (numbered ``run``); the record is dropped.
    A first run reads nothing."""
    mine = numbered(attempts, run)
    if run == 1:
        return mine
    key = keys.attempts(task_id)
    pipe = client.pipeline(transaction=False)
    pipe.lrange(key, 0, -1)
    pipe.delete(key)
    earlier = cast(list[bytes], pipe.execute()[0])
    return [attempt for runs in earlier for attempt in json.loads(runs)] + mine
