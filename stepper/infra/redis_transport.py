"""kombu's Redis transport, with one redis-py client per connection pool instead of one per operation, each
delivery recorded in one command, and the in-flight journal written with the messages it publishes. Its
connections name themselves to Redis as ``redis-py(kombu_v...;stepper_v...)`` (``CLIENT LIST``).

kombu's Redis channel builds a new ``redis.Redis`` for every publish, ack and unacked-index update
(``Channel.conn_or_acquire`` → ``Channel._create_client``), and redis-py copies its whole table of response
callbacks into each new client: about 120 µs of CPU each here, two per task on the worker and one per
publish on the producer, as much as a Redis round trip. The clients are interchangeable (each command
checks a connection out of the channel's pool and returns it), so this channel keeps one per pool and hands
it out again; a new pool (after a reconnect) gets a new client. The client kombu keeps for BRPOP and the
Pub/Sub client are left alone: kombu pins a connection on them.

kombu records every message it delivers in its unacknowledged index and hash (for the visibility timeout and
the restore of a lost worker's messages) with a transaction of four commands, and waits for Redis's answer
before it hands the message on. This QoS writes the same entries with one script, sent as soon as the message
is read (25 µs of CPU less per delivery on a quiet process, about 50 µs in a busy worker), and hands the
message on without waiting: a task starts a Redis round trip sooner. The consumer reads the answer once the
message is on its way to the pool, and nothing touches a message's entries before its record is confirmed: its
acknowledgement, rejection or restore, and the result store that acknowledges it, read an answer still due
first (:meth:`QoS.confirm`). A record whose answer is lost with its connection is written again (the same
entries: ZADD and HSET are idempotent), and one that fails is raised where it is confirmed, as kombu's own
record would have raised.

The channels also write the in-flight journal entry of a stepper message they publish (stepper.infra.inflight,
:data:`~stepper.infra.inflight.publishing`): with the message, in one script, when the journal lives in this
Redis; otherwise just before the push. And they register each task message they deliver, so that the script
storing the task's SUCCESS in the same database acknowledges it too (stepper.infra.result_riders); kombu's
acknowledgement of a message acknowledged that way does not go to Redis again.

stepper's configuration selects these classes through Celery's ``broker_transport`` for ``redis://`` and
``sentinel://`` broker URLs (stepper.brokers.REDIS_TRANSPORTS).
"""

from __future__ import annotations

import threading
import time
from functools import cached_property
from typing import Any

import kombu
import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps
from redis.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stepper.infra import inflight, lua, result_riders
from stepper.infra.connections import driver_params
from stepper.infra.result_riders import Delivery

#: A record's KEYS and ARGV for ``lua/unacked_add.lua``.
_Record = tuple[list[str], list[Any]]


class _Records:
    """The unacknowledged records one QoS sent without waiting (see the module), until their answers are read.

    Thread-safe: the consumer sends a record and reads its answer after the hand-off; an acknowledgement or a
    result store in another thread reads it first if it is still due. A record stays due until it is known to
    be written, so a confirmation that fails (Redis unreachable) is tried again by the next.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        #: A connection of ``_client``'s pool, held while answers are due on it.
        self._connection: Connection | None = None
        #: Records sent on ``_connection``, in the order sent: their answers are still to be read.
        self._sent: list[_Record] = []
        #: Records whose answers were lost with their connection, or that could not be sent: written again.
        self._unsure: list[_Record] = []

    def send(self, client: redis.Redis, record: _Record) -> None:
        """Send ``record`` through ``client``'s pool without waiting for its answer, as EVAL: Redis runs it as it
        arrives even when it has lost its scripts (a restart), which an EVALSHA would only say in its answer.
        Raises the RedisError of a record that could not be written (Redis unreachable), as kombu's own
        record would."""
        keys, args = record
        with self._lock:
            # One answer due at most: redis-py's health check (a PING before a command on a connection idle for
            # health_check_interval) would read an answer still due as its PONG, and the answer would be lost.
            if self._sent or client is not self._client:
                self._confirm()
                self._client = client
            if self._connection is None:
                self._connection = client.connection_pool.get_connection()
            try:
                self._connection.send_command(  # type: ignore[no-untyped-call]
                    "EVAL", lua.source("unacked_add"), len(keys), *keys, *args
                )
            except (RedisConnectionError, RedisTimeoutError):
                self._unsure.append(record)
                self._drop_connection(client, self._connection)
                self._confirm()
                return
            self._sent.append(record)

    def confirm(self) -> None:
        """Return once every record sent is written: read the answers due, write again (waiting) those whose
        answers were lost. Raises the RedisError of a record Redis refused, or of one it could not be reached
        for (that one stays due)."""
        with self._lock:
            self._confirm()

    def _confirm(self) -> None:
        client, connection = self._client, self._connection
        if client is None:  # nothing sent yet
            return
        refused: ResponseError | None = None
        if connection is not None:
            try:
                while self._sent:
                    try:
                        connection.read_response()
                    except ResponseError as exc:
                        refused = refused or exc
                    self._sent.pop(0)
            except (RedisConnectionError, RedisTimeoutError):
                self._drop_connection(client, connection)
            else:
                client.connection_pool.release(connection)
                self._connection = None
        if self._unsure:
            script = lua.script(client, "unacked_add")
            while self._unsure:
                keys, args = self._unsure[0]
                script(keys=keys, args=args)
                self._unsure.pop(0)
        if refused is not None:
            raise refused

    def _drop_connection(self, client: redis.Redis, connection: Connection) -> None:
        """Give back a broken connection: whether its records were written is unknown, so they are written again
        (ZADD and HSET are idempotent)."""
        connection.disconnect()  # type: ignore[no-untyped-call]
        client.connection_pool.release(connection)
        self._connection = None
        self._unsure = self._sent + self._unsure
        self._sent = []


class QoS(kombu_redis.QoS):  # type: ignore[misc]  # kombu is untyped
    """kombu's acknowledgement emulation on Redis, telling :mod:`stepper.infra.result_riders` of each task message
    delivered and acknowledged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._records = _Records()

    def append(self, message: Any, delivery_tag: str) -> None:
        """kombu's record of a delivered message in the unacknowledged index and hash, the same entries in one
        script (``lua/unacked_add.lua``) instead of a transaction of four commands, sent without waiting for its
        answer (see the module): every task passes here before it runs."""
        if self.channel.global_keyprefix:  # a prefixed client renames every key: kombu's own commands
            super().append(message, delivery_tag)
            return
        delivery = message.delivery_info
        entry = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        record = ([self.unacked_index_key, self.unacked_key], [time.time(), delivery_tag, entry])
        self._records.send(self.channel._create_client(), record)
        virtual.QoS.append(self, message, delivery_tag)
        task_id = (message.headers or {}).get("id")
        if isinstance(task_id, str):
            result_riders.delivered(
                task_id,
                Delivery(self._database, self.unacked_index_key, self.unacked_key, delivery_tag, self.confirm),
            )

    def confirm(self) -> None:
        """Return once the records of the messages delivered are written (see :meth:`_Records.confirm`)."""
        self._records.confirm()

    @cached_property
    def _database(self) -> tuple[Any, ...] | None:
        """The database this channel's messages are kept in (the same after a reconnect: same URL)."""
        return result_riders.database(self.channel._create_client())

    def ack(self, delivery_tag: str) -> None:
        if result_riders.acknowledged(delivery_tag):  # removed with its task's SUCCESS: only the bookkeeping is left
            virtual.QoS.ack(self, delivery_tag)
        else:
            self.confirm()
            super().ack(delivery_tag)
        self._slot_freed()

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        result_riders.acknowledged(delivery_tag)
        self.confirm()
        super().reject(delivery_tag, requeue=requeue)
        self._slot_freed()

    def _slot_freed(self) -> None:
        """Wake the consumer if it waits with every slot taken: a gevent worker's poller holds a waker for that
        (stepper.workers.pools.FullPoolWaker); elsewhere the poller has none and kombu's own loop asks again."""
        waker = getattr(getattr(self.channel.connection, "cycle", None), "full_pool_waker", None)
        if waker is not None:
            waker.wake()

    def restore_by_tag(self, tag: str, client: Any = None, leftmost: bool = False) -> None:
        """kombu's restore of one message from its entry, once the entry is written. kombu's restores of a closing
        channel's messages and of those past the visibility timeout both come here."""
        self.confirm()
        super().restore_by_tag(tag, client=client, leftmost=leftmost)


class _StepperChannel:
    """Mixed into kombu's channels: ``_create_client()`` returns the same client while the pool stays the same,
    ``_put()`` journals stepper's messages, and the QoS tells of deliveries and acknowledgements."""

    QoS = QoS
    _reused: redis.Redis | None = None

    def _brpop_read(self, **options: Any) -> Any:
        """kombu's read of a message, which records it and hands it on, then the record's answer: the task is on
        its way meanwhile, and the connection goes back to its pool with nothing due on it."""
        try:
            return super()._brpop_read(**options)  # type: ignore[misc]
        finally:
            qos: QoS | None = getattr(self, "_qos", None)
            if qos is not None:
                qos.confirm()

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        """kombu's connection parameters, and the name the connections give Redis made once per process
        (:func:`~stepper.infra.connections.driver_params`), not once per connection."""
        params: dict[str, Any] = super()._connparams(asynchronous)  # type: ignore[misc]
        return {**params, **driver_params(("kombu", kombu.__version__))}

    def _create_client(self, asynchronous: bool = False) -> redis.Redis:
        if asynchronous:  # kombu pins a connection on the client it keeps for BRPOP: never share that one
            return super()._create_client(asynchronous=True)  # type: ignore[misc,no-any-return]
        reused = self._reused
        if reused is not None and self.closed:  # type: ignore[attr-defined]
            # kombu dropped this channel's pool and its connection when it closed, and would fail building another
            # (AttributeError: the worker stops). Celery still acknowledges here the tasks that were running when
            # the broker connection broke; the client this channel had reconnects for them.
            return reused
        if reused is None or reused.connection_pool is not self.pool:  # type: ignore[attr-defined]
            reused = self._reused = super()._create_client()  # type: ignore[misc]
        return reused

    def close(self) -> None:
        """kombu's close (which puts back what was delivered and not acknowledged), then no store acknowledges the
        messages this channel delivered: kombu's QoS that kept them is gone."""
        qos: Any = getattr(self, "_qos", None)
        tags = list(qos._delivered) if qos is not None else []
        super().close()  # type: ignore[misc]
        for tag in tags:
            result_riders.acknowledged(tag)

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        """kombu's push of ``message`` onto ``queue``, journaling a stepper message first or with it."""
        publishing = inflight.publishing.get()
        if publishing is None or publishing.journaled:  # not a stepper message, or kombu trying the push again
            super()._put(queue, message, **kwargs)  # type: ignore[misc]
            return
        channel: Any = self  # kombu's channel, untyped
        # kombu's batched publishes, expiring queues and global key prefixes keep kombu's own push.
        plain = (
            "_publish_batch" not in kwargs and queue not in (channel._expires or ()) and not channel.global_keyprefix
        )
        if publishing.in_broker and plain:
            key = channel._q_for_pri(queue, channel._get_message_priority(message, reverse=False))
            with channel.conn_or_acquire() as client:
                publishing.journal_and_push(client, key, dumps(message))
            return
        publishing.journal()
        super()._put(queue, message, **kwargs)  # type: ignore[misc]


class Channel(_StepperChannel, kombu_redis.Channel):  # type: ignore[misc]  # kombu is untyped
    pass


class SentinelChannel(_StepperChannel, kombu_redis.SentinelChannel):  # type: ignore[misc]
    pass


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):  # type: ignore[misc]
    Channel = SentinelChannel
