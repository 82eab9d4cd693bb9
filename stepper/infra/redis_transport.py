"""kombu's Redis transport, with one redis-py client per connection pool instead of one per operation, each
delivery recorded in one command, and the in-flight journal written with the messages it publishes.

kombu's Redis channel builds a new ``redis.Redis`` for every publish, ack and unacked-index update
(``Channel.conn_or_acquire`` → ``Channel._create_client``), and redis-py copies its whole table of response
callbacks into each new client: about 120 µs of CPU each here, two per task on the worker and one per
publish on the producer, as much as a Redis round trip. The clients are interchangeable (each command
checks a connection out of the channel's pool and returns it), so this channel keeps one per pool and hands
it out again; a new pool (after a reconnect) gets a new client. The client kombu keeps for BRPOP and the
Pub/Sub client are left alone: kombu pins a connection on them.

kombu records every message it delivers in its unacknowledged index and hash (for the visibility timeout and
the restore of a lost worker's messages) with a transaction of four commands; this QoS writes the same entries
with one script, 25 µs of CPU less per delivery on a quiet process and about 50 µs in a busy worker.

The channels also write the in-flight journal entry of a stepper message they publish (stepper.infra.inflight,
:data:`~stepper.infra.inflight.publishing`): with the message, in one script, when the journal lives in this
Redis; otherwise just before the push. And they register each task message they deliver, so that the script
storing the task's SUCCESS in the same database acknowledges it too (stepper.infra.result_riders); kombu's
acknowledgement of a message acknowledged that way does not go to Redis again.

stepper's configuration selects these classes through Celery's ``broker_transport`` for ``redis://`` and
``sentinel://`` broker URLs (stepper.brokers.REDIS_TRANSPORTS).
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps

from stepper.infra import inflight, lua, result_riders
from stepper.infra.result_riders import Delivery


class QoS(kombu_redis.QoS):  # type: ignore[misc]  # kombu is untyped
    """kombu's acknowledgement emulation on Redis, telling :mod:`stepper.infra.result_riders` of each task message
    delivered and acknowledged."""

    def append(self, message: Any, delivery_tag: str) -> None:
        """kombu's record of a delivered message in the unacknowledged index and hash, the same entries in one
        script (``lua/unacked_add.lua``) instead of a transaction of four commands: every task passes here before
        it runs."""
        if self.channel.global_keyprefix:  # a prefixed client renames every key: kombu's own commands
            super().append(message, delivery_tag)
            return
        delivery = message.delivery_info
        entry = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        with self.channel.conn_or_acquire() as client:
            lua.script(client, "unacked_add")(
                keys=[self.unacked_index_key, self.unacked_key], args=[time.time(), delivery_tag, entry]
            )
        virtual.QoS.append(self, message, delivery_tag)
        task_id = (message.headers or {}).get("id")
        if isinstance(task_id, str):
            result_riders.delivered(
                task_id, Delivery(self._database, self.unacked_index_key, self.unacked_key, delivery_tag)
            )

    @cached_property
    def _database(self) -> tuple[Any, ...] | None:
        """The database this channel's messages are kept in (the same after a reconnect: same URL)."""
        return result_riders.database(self.channel._create_client())

    def ack(self, delivery_tag: str) -> None:
        if result_riders.acknowledged(delivery_tag):  # removed with its task's SUCCESS: only the bookkeeping is left
            virtual.QoS.ack(self, delivery_tag)
            return
        super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        result_riders.acknowledged(delivery_tag)
        super().reject(delivery_tag, requeue=requeue)


class _StepperChannel:
    """Mixed into kombu's channels: ``_create_client()`` returns the same client while the pool stays the same,
    ``_put()`` journals stepper's messages, and the QoS tells of deliveries and acknowledgements."""

    QoS = QoS
    _reused: redis.Redis | None = None

    def _create_client(self, asynchronous: bool = False) -> redis.Redis:
        if asynchronous:  # kombu pins a connection on the client it keeps for BRPOP: never share that one
            return super()._create_client(asynchronous=True)  # type: ignore[misc,no-any-return]
        reused = self._reused
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
