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
"""

from __future__ import annotations

from typing import Any

from kombu.utils import eventio
from kombu.utils.compat import detect_environment

from stepper.infra.connections import configure_max_connections
from stepper.providers.transport import configure_pool

#: Connections the worker needs beyond one per task: the consumer's, the remote-control mailbox, heartbeats,
#: the recovery sweep and housekeeping, and publishes from inside tasks (retries, callbacks).
HEADROOM = 16


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
