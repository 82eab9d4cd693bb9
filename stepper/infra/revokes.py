"""Revokes that outlive the workers: every revoked task id is recorded in Redis, with the time of its revoke.

Celery broadcasts a revoke to the workers that are up and each keeps it in memory only, so a task revoked
while no worker runs (or before one restarts, or during a retry countdown) used to run later anyway. The
record lives as long as results do (``result_expires``); workers load it when they start and read what was
added since every second, and delayed messages are checked against it before they are published.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from redis import Redis

from stepper.infra import keys
from stepper.infra.connections import redis_now_ms


def record(client: Redis, task_ids: Iterable[str], keep_s: float) -> None:
    """Record ``task_ids`` as revoked now (by Redis's clock), forgetting revokes older than ``keep_s``."""
    ids = list(task_ids)
    if not ids:
        return
    now_ms = redis_now_ms(client)
    pipe = client.pipeline(transaction=True)
    pipe.zadd(keys.revoked(), dict.fromkeys(ids, now_ms))
    pipe.zremrangebyscore(keys.revoked(), "-inf", now_ms - int(keep_s * 1000))
    pipe.pexpire(keys.revoked(), int(keep_s * 1000))
    pipe.execute()


def revoked_since(client: Redis, since_ms: int) -> tuple[list[str], int]:
    """Task ids revoked at or after ``since_ms``, and the time to ask from next (the newest revoke seen)."""
    found = cast(list[tuple[bytes, float]], client.zrangebyscore(keys.revoked(), since_ms, "+inf", withscores=True))
    ids = [member.decode() for member, _ in found]
    newest = max((int(score) for _, score in found), default=since_ms)
    return ids, newest


def revoked_among(client: Redis, task_ids: list[str]) -> set[str]:
    """Which of ``task_ids`` are revoked."""
    if not task_ids:
        return set()
    scores = client.zmscore(keys.revoked(), task_ids)
    return {task_id for task_id, score in zip(task_ids, scores, strict=True) if score is not None}
