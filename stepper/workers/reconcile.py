"""Housekeeping duty: publish again the journaled messages that were lost in flight (stepper.infra.inflight).

One worker at a time (a lock shorter than the interval), every lease period, looks at the journal entries
older than ``stepper_recovery["inflight_grace_s"]``: a task with a stored result (or revoked) is forgotten;
one whose message is in a queue, in kombu's unacknowledged hash or among the delayed messages is stamped as
seen; one found nowhere becomes a suspect, and a suspect still found nowhere a lease period later is
published again with its task id, unless it was revoked. Work dropped on purpose must therefore be revoked:
``celery purge`` empties the queues behind stepper's back, and the journal would bring the purged family
tasks back (clear ``<ns>:inflight:*`` with it, or set ``inflight_grace_s`` to 0). Looking for a message
reads the stepper queues and the unacknowledged hash whole, so this costs in proportion to the backlog, and
only when old entries exist.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from celery import states

from stepper.infra import inflight, keys, revokes
from stepper.infra.connections import as_text, broker_redis, redis_now_ms
from stepper.ops.fleet import queue_lists
from stepper.schemas import KINDS

logger = logging.getLogger(__name__)


class ReconcileDuty:
    name = "reconciling the in-flight journal"

    def __init__(self, app: Any, hostname: str, lease_s: float, grace_s: float) -> None:
        self.app = app
        self.hostname = hostname
        self.interval_s = lease_s
        self.grace_s = grace_s

    def tick(self) -> None:
        self.reconcile()

    def reconcile(self) -> list[str]:
        """One round; returns the task ids published again."""
        client = self.app.state_client()
        if not client.set(keys.inflight_lock(), self.hostname.encode(), nx=True, px=int(self.interval_s * 900)):
            return []
        candidates = inflight.older_than(client, self.grace_s)
        if not candidates:
            client.delete(keys.inflight_suspects())
            return []
        unfinished = self._unfinished(candidates)
        inflight.forget(client, [task_id for task_id in candidates if task_id not in unfinished])
        seen = self._in_the_broker(client) & unfinished
        inflight.touch(client, sorted(seen))
        missing = unfinished - seen
        now_ms = redis_now_ms(client)
        suspects = {as_text(key): int(value) for key, value in client.hgetall(keys.inflight_suspects()).items()}
        due = sorted(task_id for task_id in missing if now_ms - suspects.get(task_id, now_ms) >= self.interval_s * 1000)
        revoked = revokes.revoked_among(client, due)  # dropped on purpose: never brought back
        inflight.forget(client, sorted(revoked))
        due = [task_id for task_id in due if task_id not in revoked]
        for task_id in due:
            message = inflight.message(client, task_id)
            if message is not None:
                self.app.send_task(message.name, message.args, message.kwargs, **message.options)
        if due:
            logger.warning("published %d lost message(s) again (in no queue for %gs): %s", len(due), self.grace_s, due)
        pipe = client.pipeline(transaction=True)
        pipe.delete(keys.inflight_suspects())
        waiting = {task_id: suspects.get(task_id, now_ms) for task_id in missing if task_id not in due}
        if waiting:
            pipe.hset(keys.inflight_suspects(), mapping=waiting)
        pipe.execute()
        return due

    def _unfinished(self, task_ids: list[str]) -> set[str]:
        """The ids whose task has no final state in the result backend."""
        backend = self.app.backend
        metas = backend.client.mget([backend.get_key_for_task(task_id) for task_id in task_ids])
        finished = {
            task_id
            for task_id, meta in zip(task_ids, metas, strict=True)
            if meta is not None and json.loads(meta).get("status") in states.READY_STATES
        }
        return set(task_ids) - finished

    def _in_the_broker(self, state: Any) -> set[str]:
        """Task ids of the stepper messages waiting in a queue, unacknowledged, or delayed."""
        broker = broker_redis(self.app.conf)
        found: set[str] = set()
        for queue in KINDS:
            for name in queue_lists(queue):
                found.update(_task_id(raw) for raw in broker.lrange(name, 0, -1))
        for raw in broker.hvals("unacked"):
            found.add(_task_id(raw, wrapped=True))
        for raw in state.hvals(keys.delayed_messages()):
            found.add(str(json.loads(raw)["options"].get("task_id")))
        return found


def _task_id(raw: bytes | str, *, wrapped: bool = False) -> str:
    """The task id of a kombu Redis message (``[message, exchange, routing key]`` in the unacked hash)."""
    try:
        message = json.loads(raw)
        return str((message[0] if wrapped else message)["headers"]["id"])
    except (ValueError, KeyError, TypeError, IndexError):
        return ""
