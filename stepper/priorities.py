"""Named priority levels: stepper's level 0 is the most urgent of ten, whichever broker carries the message.

On Redis the level is kombu's own number (one list per level, 0 polled first). RabbitMQ counts the other way
(a higher ``priority`` property is delivered first, up to the queue's ``x-max-priority``), so on it the message
carries ``9 - level`` (:func:`broker_priority`), and a retry's priority read back from the delivery is turned
into the level again (:func:`level_of`). On RabbitMQ's quorum queues priorities need RabbitMQ 4.0, which knows
two classes, "high" (above 4) and "normal": ``interactive`` (level 0, sent as 9) still overtakes ``normal``
(5, sent as 4) and ``batch`` (9, sent as 0), which share one first-in first-out class. Before 4.0 (this
project's Debian ships 3.10) quorum queues ignore priorities: keep classic queues where ``interactive`` must
overtake a backlog, or run interactive work on queues of its own.
"""

from __future__ import annotations

from typing import Literal

from stepper.brokers import MAX_PRIORITY, BrokerKind
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


def priority_from_text(text: str) -> int:
    """A level from a command-line option or a query parameter, where a number arrives as text (``"3"``) and a
    name as itself (``"batch"``); InvalidRequest as :func:`priority_value`."""
    return priority_value(int(text) if text.isdigit() else text)


def broker_priority(level: int, broker: BrokerKind) -> int:
    """The ``priority`` property a message of stepper ``level`` carries on ``broker``."""
    return MAX_PRIORITY - level if broker == "amqp" else level


def level_of(priority: int, broker: BrokerKind) -> int:
    """The stepper level of a delivered message's ``priority`` property (the inverse of broker_priority)."""
    return broker_priority(min(max(priority, 0), MAX_PRIORITY), broker)
