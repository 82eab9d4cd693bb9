"""Named priority levels. On Redis, 0 is the most urgent of ten levels (RabbitMQ counts the other way)."""

from __future__ import annotations

from typing import Literal

from stepper.errors import InvalidRequest

#: kombu's priority lists on Redis, one per level: ten real levels (its default is four: 0, 3, 6, 9). Producers
#: that want ten levels must use the same ``priority_steps`` transport option (stepper's own producers do).
PRIORITY_STEPS = tuple(range(10))

PriorityName = Literal["interactive", "normal", "batch"]

PRIORITIES: dict[PriorityName, int] = {
    "interactive": 0,  # a person is waiting for it
    "normal": 5,  # the default
    "batch": 9,  # scripts and backfills: runs when nothing else waits
}


def priority_value(priority: PriorityName | int | str | None) -> int:
    """A level from 0 to 9, given a name or a number; None means ``normal``."""
    if priority is None:
        return PRIORITIES["normal"]
    if isinstance(priority, bool):
        raise InvalidRequest(f"priority must be a name or a number from 0 to 9, not {priority!r}")
    if isinstance(priority, int):
        if 0 <= priority <= 9:
            return priority
        raise InvalidRequest(f"priority {priority} is out of range: use 0 (most urgent) to 9")
    if priority in PRIORITIES:
        return PRIORITIES[priority]
    names = ", ".join(PRIORITIES)
    raise InvalidRequest(f"unknown priority {priority!r}: use one of {names} or a number from 0 to 9")
