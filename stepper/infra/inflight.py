"""A journal of published stepper messages that have not finished yet, so that none is lost in flight.

On Redis a worker takes a message with BRPOP and only then records it as unacknowledged: a connection cut
between the two (Redis crashing or shutting down, a reset) loses the message, which is then in no queue, no
unacknowledged hash and no lease. So every stepper task message is also written here when it is published,
and forgotten when its task ends (success, final failure, or a retry, which is published afresh). The
housekeeping reconciles entries older than a grace period: a task whose result is stored is forgotten; one
found in a queue, in the unacknowledged hash or among delayed messages waits on; one found nowhere on two
checks a lease apart is published again, with the same task id.
"""

from __future__ import annotations

from typing import cast

from redis import Redis

from stepper.infra import keys, lua
from stepper.infra.connections import redis_now_ms
from stepper.infra.delayed import DelayedMessage


def record(client: Redis, task_id: str, message: DelayedMessage) -> None:
    """Journal ``message`` (what ``send_task`` publishes) under ``task_id``, stamped with Redis's clock: one
    round trip. Raises TypeError when an option is not JSON."""
    script = lua.script(client, "inflight_record")
    script(keys=[keys.inflight_since(), keys.inflight_messages()], args=[task_id, message.to_json()])


def forget(client: Redis, task_ids: list[str]) -> None:
    if task_ids:
        pipe = client.pipeline(transaction=True)
        pipe.zrem(keys.inflight_since(), *task_ids)
        pipe.hdel(keys.inflight_messages(), *task_ids)
        pipe.execute()


def older_than(client: Redis, age_s: float, limit: int = 1000) -> list[str]:
    """Journaled task ids published more than ``age_s`` ago (by Redis's clock), oldest first."""
    cutoff = redis_now_ms(client) - int(age_s * 1000)
    found = cast(list[bytes], client.zrangebyscore(keys.inflight_since(), "-inf", cutoff, start=0, num=limit))
    return [member.decode() for member in found]


def touch(client: Redis, task_ids: list[str]) -> None:
    """Stamp ``task_ids`` as seen now: they are not looked at again before another grace period."""
    if task_ids:
        client.zadd(keys.inflight_since(), dict.fromkeys(task_ids, redis_now_ms(client)), xx=True)


def message(client: Redis, task_id: str) -> DelayedMessage | None:
    raw = client.hget(keys.inflight_messages(), task_id)
    return None if raw is None else DelayedMessage.from_json(raw)
