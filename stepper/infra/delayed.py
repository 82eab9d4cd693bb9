"""Delayed messages kept in Redis until they are due, not in a worker's memory.

Celery hands a message with a countdown or an ETA to a worker at once, and the worker holds it in memory until
it is due: a provider outage that sends thousands of broker retries with countdowns piles them all into one
worker (its memory grows, its warm shutdown cannot finish, the other workers idle). stepper keeps such a
message in the state Redis instead (a sorted set of due times and a hash of messages, under one entry id per
delay) and the workers' housekeeping publishes each one when it is due, within about a second.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from kombu.utils import json
from redis import Redis

from stepper.infra import keys, lua
from stepper.infra.connections import as_text

#: Entries one claim takes at most; the mover claims again while it gets full batches.
CLAIM_BATCH = 500
#: How long a claimed entry waits before another mover may publish it (its claimer died before publishing).
CLAIM_LEASE_S = 30.0


@dataclass(frozen=True)
class DelayedMessage:
    """A task message to publish later: what ``send_task`` was given, less the countdown or ETA."""

    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]

    def to_json(self) -> str:
        """kombu's JSON (datetimes and UUIDs included); raises TypeError for anything else it cannot encode.
        Encoded once: the producer checks a message with it, then journals or schedules the same text."""
        return self._json

    @cached_property
    def _json(self) -> str:
        return str(json.dumps({"name": self.name, "args": self.args, "kwargs": self.kwargs, "options": self.options}))

    @classmethod
    def from_json(cls, text: str | bytes) -> DelayedMessage:
        data = json.loads(text)
        return cls(data["name"], list(data["args"]), dict(data["kwargs"]), dict(data["options"]))


def schedule(client: Redis, message: DelayedMessage, delay_s: float) -> str:
    """Keep ``message`` until ``delay_s`` seconds from now (by Redis's clock); returns the entry's id."""
    entry = uuid.uuid4().hex
    script = lua.script(client, "delayed_schedule")
    script(
        keys=[keys.delayed_due(), keys.delayed_messages()], args=[entry, max(0, int(delay_s * 1000)), message.to_json()]
    )
    return entry


def claim_due(client: Redis, limit: int = CLAIM_BATCH) -> list[tuple[str, DelayedMessage]]:
    """The due entries, each claimed for CLAIM_LEASE_S: publish them, then call :func:`done`."""
    script = lua.script(client, "delayed_claim")
    flat = script(keys=[keys.delayed_due(), keys.delayed_messages()], args=[limit, int(CLAIM_LEASE_S * 1000)])
    pairs = zip(flat[::2], flat[1::2], strict=True)
    return [(as_text(entry), DelayedMessage.from_json(raw)) for entry, raw in pairs]


def done(client: Redis, entries: list[str]) -> None:
    """Forget published (or dropped) entries."""
    if entries:
        pipe = client.pipeline(transaction=True)
        pipe.zrem(keys.delayed_due(), *entries)
        pipe.hdel(keys.delayed_messages(), *entries)
        pipe.execute()


def pending(client: Redis) -> int:
    """How many delayed messages wait in Redis."""
    return int(client.zcard(keys.delayed_due()))
