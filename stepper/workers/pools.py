"""Connection pools sized from the worker's concurrency, so that a thousand tasks in flight never run out.

Celery's defaults suit a few concurrent tasks. kombu's Redis transport keeps at most ``max_connections``
(a ``broker_transport_options`` key, default 10) client connections per channel and raises
``MaxConnectionsError`` instead of waiting for one; with ``acks_late`` every finishing task acknowledges on
that pool, so a threads or gevent pool of 1,000 failed its acknowledgements (``Couldn't ack ...``) until its
broker connection was rebuilt and the unacknowledged messages went back to the queue. redis-py (8.0 on) caps
every other pool at 100 the same way: the result backend's (Celery's ``redis_max_connections``, unset by
default) and stepper's own state and cache clients. All three are sized here to the concurrency plus the
worker's own connections, before anything connects, and the vendors' HTTP pools to the concurrency.

A gevent worker with that many sockets also hands file descriptors above 1023 to the broker connection when it
reconnects; kombu polls with ``select()`` under greenlets (``kombu.utils.eventio._get_poller``), which refuses
them (``ValueError: filedescriptor out of range in select()``) and the worker stops with "Unrecoverable error".
:func:`poll_without_fd_limit` makes kombu use gevent's cooperative ``poll``, which has no such limit.

A gevent worker runs Celery's blocking consumer loop (``synloop``), and kombu's Redis transport stops asking for
messages while every slot of the pool is taken (its prefetch is full). It then waits on its other sockets (the
remote-control mailbox) for as long as the loop allows, two seconds, and a task finishing meanwhile does not
wake it: its slot stays empty until then. At 32 greenlets and 100 ms calls a bare Celery worker completed 22 tasks/s
of the 320 the calls allow (``make bench``, the concurrency curve). :func:`refill_promptly_when_full` adds a
:class:`FullPoolWaker` to what kombu waits on while the pool is full, and the acknowledgement that frees a slot
wakes it (stepper.infra.redis_transport's QoS): the consumer asks for the next message at once, and a pool full
of long calls costs no wake-ups. Under kombu's own Redis transport (a deployment's ``broker_transport``) nothing
wakes it, and it waits at most ``FULL_POOL_WAIT_S`` while the pool is full.
"""

from __future__ import annotations

import socket
from contextlib import suppress
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils import eventio
from kombu.utils.compat import detect_environment

from stepper.infra import redis_transport
from stepper.infra.connections import configure_max_connections
from stepper.providers.transport import configure_pool

#: Connections the worker needs beyond one per task: the consumer's, the remote-control mailbox, heartbeats,
#: the recovery sweep and housekeeping, and publishes from inside tasks (retries, callbacks).
HEADROOM = 16
#: The longest a gevent worker's consumer waits with its pool full when its transport is kombu's own, whose
#: acknowledgements do not wake it (s).
FULL_POOL_WAIT_S = 0.01


def size_for_concurrency(conf: Any, concurrency: int) -> None:
    """Size the broker transport's, the result backend's and stepper's own Redis pools for ``concurrency``
    concurrent tasks, and the vendors' HTTP pools; ``conf`` is the worker app's configuration, a deployment's
    larger settings are kept. Called from ``worker_init``, before the consumer or any client connects."""
    wanted = concurrency + HEADROOM
    options = dict(conf.broker_transport_options or {})
    options["max_connections"] = max(wanted, options.get("max_connections") or 0)
    conf.broker_transport_options = options
    conf.redis_max_connections = max(wanted, conf.redis_max_connections or 0)
    configure_max_connections(wanted)
    configure_pool(concurrency)


def poll_without_fd_limit() -> None:
    """In a gevent worker, make kombu poll its broker sockets with gevent's ``poll`` rather than ``select``
    (see the module's docstring); elsewhere nothing changes. Under gevent's monkey-patching ``select.poll`` is
    gevent's cooperative one, and kombu's own ``_poll`` wrapper drives it unchanged."""
    if detect_environment() != "gevent":
        return
    eventio._get_poller = lambda: eventio._poll


class FullPoolWaker:
    """A socket pair kombu's poller (``kombu.transport.redis.MultiChannelPoller``) waits on beside the broker's
    sockets while the pool is full; :meth:`wake`, called as an acknowledgement or rejection frees a slot, makes it
    readable, so the poller returns and asks for the next message. kombu ignores a readable socket it does not
    know (``handle_event``), and :meth:`drain` empties it once the poller has returned."""

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        #: True while the consumer waits with the pool full: only then does a freed slot need telling.
        self.waiting = False

    def fileno(self) -> int:
        return self._reader.fileno()

    def wake(self) -> None:
        """Tell a waiting consumer that a slot is free (once per wait; a full socket buffer is already a wake)."""
        if self.waiting:
            self.waiting = False
            with suppress(BlockingIOError):
                self._writer.send(b"\0")

    def drain(self) -> None:
        with suppress(BlockingIOError):
            while self._reader.recv(4096):
                pass


def refill_promptly_when_full() -> None:
    """In a gevent worker, wake kombu's wait on its sockets while the pool is full as soon as a slot frees (see the
    module's docstring); elsewhere nothing changes."""
    if detect_environment() != "gevent" or getattr(kombu_redis.MultiChannelPoller.get, "refills_promptly", False):
        return
    kombu_get = kombu_redis.MultiChannelPoller.get

    def get(poller: Any, callback: Any, timeout: float | None = None) -> Any:
        full = [channel for channel in poller._channels if channel.active_queues and not channel.qos.can_consume()]
        if not full:
            return kombu_get(poller, callback, timeout)
        if not all(isinstance(channel.qos, redis_transport.QoS) for channel in full):
            # kombu's own transport (a deployment's broker_transport) wakes nothing: wait briefly instead.
            return kombu_get(poller, callback, FULL_POOL_WAIT_S if timeout is None else min(timeout, FULL_POOL_WAIT_S))
        waker: FullPoolWaker | None = getattr(poller, "full_pool_waker", None)
        if waker is None:
            waker = poller.full_pool_waker = FullPoolWaker()
            poller.poller.register(waker, eventio.READ)
        waker.waiting = True
        try:
            return kombu_get(poller, callback, timeout)
        finally:
            waker.waiting = False
            waker.drain()

    get.refills_promptly = True  # type: ignore[attr-defined]
    kombu_redis.MultiChannelPoller.get = get
