"""Messages stranded in kombu's ``unacked`` hash run again within a minute, not after the visibility timeout.

On Redis, kombu keeps each delivered, unacknowledged message in the ``unacked`` hash and puts it back on its
queue only once it is older than the visibility timeout: an hour here, so that a long task is never handed
to a second worker. A message is stranded there when no worker will run or acknowledge it any more: its
worker was SIGKILLed, or Redis restarted and Celery dropped the requests it had prefetched or scheduled (a
countdown, such as a broker retry), because "a delivery tag belongs to the old connection".

So every worker holds a lease on the delivery tags it still has (running, prefetched or scheduled), renewed
four times per lease period. One worker at a time sweeps: a stepper message that no lease has held for a
whole lease period goes back on its queue through kombu's own restore, marked redelivered. A task whose
result is already stored then returns it instead of running again, and idempotency keys stop the rest.
Suspicion is recorded per Redis run id, so after a restart every worker has a whole lease period to renew
before anything it holds can be taken.

None of this runs on RabbitMQ: it returns a worker's unacknowledged messages to their queues as soon as the
worker's channel closes (its process died, its connection dropped), marked redelivered.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from stepper.infra import keys
from stepper.infra.connections import as_text, redis_now_ms
from stepper.settings import RENEWALS_PER_LEASE
from stepper.workers.broker_connection import HeldConnection

logger = logging.getLogger(__name__)


def held_delivery_tags() -> set[str]:
    """The delivery tags of every request this worker still has: running, prefetched or scheduled."""
    from celery.worker import state

    for _ in range(3):  # the consumer and the pool change these sets while we read them
        try:
            requests: Iterable[Any] = (
                *state.requests.values(),
                *state.active_requests,
                *state.reserved_requests,
                *state.scheduled_requests,
            )
            return {str(request.message.delivery_tag) for request in requests}
        except RuntimeError:
            continue
    return set()


class Recovery:
    """One worker's lease, and the fleet's sweep, on a kombu Redis channel (the broker's database)."""

    def __init__(self, hostname: str, lease_s: float) -> None:
        self.hostname = hostname
        self.lease_s = lease_s

    @property
    def interval_s(self) -> float:
        return self.lease_s / RENEWALS_PER_LEASE

    def renew(self, client: Any, tags: set[str]) -> None:
        """Replace this worker's lease with ``tags``, valid for one lease period."""
        key = keys.recovery_lease(self.hostname)
        pipe = client.pipeline(transaction=True)
        pipe.delete(key)
        if tags:
            pipe.sadd(key, *tags)
            pipe.pexpire(key, int(self.lease_s * 1000))
        pipe.execute()

    def sweep(self, channel: Any) -> list[str]:
        """Restore the stepper messages no lease has held for a lease period; returns their delivery tags.

        Runs on one worker at a time (a lock shorter than the sweep interval); on the others it does nothing.
        """
        client = channel.client
        if not client.set(keys.recovery_sweep_lock(), self.hostname.encode(), nx=True, px=int(self.interval_s * 900)):
            return []
        now = redis_now_ms(client) / 1000  # Redis's clock: the fleet's hosts may disagree with each other
        suspects_key = keys.recovery_suspects(client.info("server")["run_id"])
        leased = self._leased(client)
        suspects = {as_text(tag): float(first) for tag, first in client.hgetall(suspects_key).items()}
        unacked = {as_text(tag) for tag in client.hkeys(channel.unacked_key)}
        restored: list[str] = []
        newly_suspect: dict[str, float] = {}
        for tag in unacked - leased:
            first_seen = suspects.get(tag)
            if first_seen is None:
                if _is_stepper_message(client.hget(channel.unacked_key, tag)):
                    newly_suspect[tag] = now
            elif now - first_seen >= self.lease_s:
                channel.qos.restore_by_tag(tag, client)
                restored.append(tag)
        cleared = [tag for tag in suspects if tag not in unacked or tag in leased or tag in restored]
        pipe = client.pipeline(transaction=False)
        if newly_suspect:
            pipe.hset(suspects_key, mapping=newly_suspect)
        if cleared:
            pipe.hdel(suspects_key, *cleared)
        pipe.pexpire(suspects_key, int(self.lease_s * 4 * 1000))
        pipe.execute()
        if restored:
            logger.warning(
                "put %d stranded message(s) back on their queues: no worker held them for %gs",
                len(restored),
                self.lease_s,
            )
        return restored

    @staticmethod
    def _leased(client: Any) -> set[str]:
        leases = list(client.scan_iter(match=keys.recovery_lease_pattern(), count=1000))
        return {as_text(tag) for tag in client.sunion(leases)} if leases else set()


def _is_stepper_message(raw: bytes | None) -> bool:
    """Only stepper's own tasks are restored: another app sharing this database keeps kombu's rules."""
    if raw is None:
        return False
    try:
        payload, _exchange, _routing_key = json.loads(raw)
        return str(payload["headers"]["task"]).startswith("stepper.")
    except (ValueError, TypeError, KeyError):
        return False


class RecoveryDuty:
    """Housekeeping duty: renew this worker's lease and sweep, every quarter lease (on the broker's Redis)."""

    name = "lease on this worker's messages"

    def __init__(self, app: Any, recovery: Recovery) -> None:
        self.recovery = recovery
        self.interval_s = recovery.interval_s
        self.connection = HeldConnection(app)

    def tick(self) -> None:
        try:
            channel = self.connection.channel()
            self.recovery.renew(channel.client, held_delivery_tags())
            self.recovery.sweep(channel)
        except Exception:
            self.connection.reset()
            raise
