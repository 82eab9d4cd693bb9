"""A journal of published stepper messages that have not finished yet, so that none is lost in flight.

On Redis a worker takes a message with BRPOP and only then records it as unacknowledged: a connection cut
between the two (Redis crashing or shutting down, a reset) loses the message, which is then in no queue, no
unacknowledged hash and no lease. So every stepper task message is also written here when it is published,
and forgotten when its task ends (success or final failure; a retry is published afresh under the same task
id, so its entry stays, describing the retry, or the delayed store holds it). A worker forgets its finished
tasks in batches (``forget_soon``): one transaction per ``FORGET_WINDOW_S``, not one round trip per task. The
housekeeping reconciles entries older than a grace period: a task whose result is stored is forgotten; one
found in a queue, in the unacknowledged hash or among delayed messages waits on; one found nowhere on two
checks a lease apart is published again, with the same task id.

When the journal lives in the broker's own Redis (one Redis for everything, the default), the entry and the
message go in one script, both or neither, in the publish's round trip: the producer sets :data:`publishing`
around its publish, and stepper's kombu transport (stepper.infra.redis_transport) writes the two together.
Elsewhere the transport journals the message just before it pushes it.

A publish can also carry a rate-limit admission (:data:`admitting`, set by the gateway around a submission: the
caller's key is charged for the task): where the admission's keys live in that same Redis, the script asks it
first and pushes and journals the message only if it admits (``lua/inflight_publish_admit.lua``), so a streamed
chat's first token waits on one round trip fewer. Elsewhere the admission is asked alone just before.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, cast

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stepper.infra import keys, lua, result_riders, threads
from stepper.infra.connections import redis_now_ms
from stepper.infra.delayed import DelayedMessage

log = logging.getLogger(__name__)

#: Seconds a finished task's id waits to leave the journal with the others finished meanwhile. A worker that
#: dies in that window leaves them to the reconciliation, which forgets a task whose result is stored.
FORGET_WINDOW_S = 0.05


class PublishAdmission(Protocol):
    """A rate-limit admission that the publish of one message asks before it pushes (a gateway key's,
    stepper.gateway.auth.KeyAdmission). A refusal raises, from :meth:`answered` or :meth:`ask`, and nothing is
    pushed or journaled."""

    @property
    def client(self) -> Redis:
        """A client of the Redis the admission's keys live in."""
        ...

    @property
    def call(self) -> lua.ScriptCall:
        """admission.lua's ``admit``, with its keys and arguments."""
        ...

    def answered(self, reply: Any, pushed: bool) -> None:
        """Keep what ``admit`` answered in the publish's script; raise the refusal when the message was not
        pushed."""
        ...

    @property
    def asked(self) -> bool:
        """Whether it was asked already (alone or with a push)."""
        ...

    def ask(self) -> None:
        """Ask alone (one round trip) unless it was asked already; raise the refusal, then or again now."""
        ...


#: The admission the publish in progress in this thread or greenlet asks, set by its caller around it.
admitting: ContextVar[PublishAdmission | None] = ContextVar("stepper_admitting", default=None)


@dataclass
class Publishing:
    """A stepper message being published, to journal before (or with) its push onto the broker's queue.

    ``client`` is the state Redis that holds the journal, ``message`` the JSON of what ``send_task`` publishes;
    ``in_broker`` says that the broker's Redis is that same Redis (the entry may then go with the message).
    ``admission``, when the publish carries one, is asked before the message is pushed (see the module).
    ``journaled`` turns True once the entry is written.
    """

    client: Redis
    task_id: str
    message: str
    in_broker: bool
    admission: PublishAdmission | None = None
    journaled: bool = False

    def journal(self) -> None:
        """Ask the admission alone, then write the entry alone (two round trips at most); the message is pushed
        afterwards."""
        if self.admission is not None:
            self.admission.ask()
        record(self.client, self.task_id, self.message)
        self.journaled = True

    def journal_and_push(self, broker: Redis, queue_key: str, payload: str) -> None:
        """Write the entry and push ``payload`` (the message as kombu carries it) onto the list ``queue_key``:
        one script, both or neither, which asks the admission first where its keys live in ``broker`` (else it is
        asked alone before). Only when ``in_broker``: ``broker`` is then the journal's Redis too. Raises the
        admission's refusal, with nothing written."""
        names, values = (
            [keys.inflight_since(), keys.inflight_messages(), queue_key],
            [self.task_id, self.message, payload],
        )
        admission = self.admission
        if (
            admission is not None
            and not admission.asked
            and result_riders.writes_to(admission.client, result_riders.database(broker))
        ):
            call = admission.call
            script = lua.script(broker, "admission", "inflight_journal", "inflight_publish_admit")
            pushed, answer = script(keys=[*names, *call.keys], args=[*values, *call.args])
            admission.answered(answer, bool(pushed))
        else:
            if admission is not None:
                admission.ask()  # asked already: nothing, or its refusal again
            lua.script(broker, "inflight_journal", "inflight_publish")(keys=names, args=values)
        self.journaled = True


#: The publish in progress in this thread or greenlet, set by the producer (stepper.celery) around it.
publishing: ContextVar[Publishing | None] = ContextVar("stepper_publishing", default=None)


def record(client: Redis, task_id: str, message: str) -> None:
    """Journal ``message`` (the JSON of what ``send_task`` publishes) under ``task_id``, stamped with Redis's
    clock: one round trip."""
    script = lua.script(client, "inflight_journal", "inflight_record")
    script(keys=[keys.inflight_since(), keys.inflight_messages()], args=[task_id, message])


def forget(client: Redis, task_ids: list[str]) -> None:
    """Take ``task_ids`` out of the journal: one transaction."""
    if task_ids:
        pipe = client.pipeline(transaction=True)
        pipe.zrem(keys.inflight_since(), *task_ids)
        pipe.hdel(keys.inflight_messages(), *task_ids)
        pipe.execute()


class Forgetter:
    """Forgets finished tasks in batches for one process and one Redis: a thread, started with the first id,
    that waits ``FORGET_WINDOW_S`` after an id arrives and then forgets every id held, in one transaction."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._held: list[str] = []
        self._thread: threading.Thread | None = None

    def add(self, task_id: str) -> None:
        with self._lock:
            self._held.append(task_id)
            self._thread = threads.running(self._thread, self._run, "stepper-inflight-forgetter")
            self._arrived.notify()

    def flush(self) -> None:
        """Forget every id held now. A Redis error is logged, not raised: those tasks' results are stored, and
        the reconciliation forgets them."""
        with self._lock:
            task_ids, self._held = self._held, []
        try:
            forget(self._client, task_ids)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("could not take %d finished task(s) out of the in-flight journal (%s)", len(task_ids), exc)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._held:
                    self._arrived.wait()
            time.sleep(FORGET_WINDOW_S)
            self.flush()


_forgetters: dict[tuple[int, int], Forgetter] = {}


def forget_soon(client: Redis, task_id: str) -> None:
    """Forget ``task_id`` with the next batch of this process (a forked child gets its own forgetter)."""
    _forgetters.setdefault((os.getpid(), id(client)), Forgetter(client)).add(task_id)


def flush_forgotten() -> None:
    """Forget now what this process holds (a worker shutting down)."""
    for (pid, _), forgetter in list(_forgetters.items()):
        if pid == os.getpid():
            forgetter.flush()


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
