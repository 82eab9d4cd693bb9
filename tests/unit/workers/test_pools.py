"""Pools sized from the worker's concurrency, and kombu's poller under gevent: each fault reproduced first."""

from __future__ import annotations

import select
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from celery import Celery
from kombu.transport import redis as kombu_redis

from stepper.infra import connections
from stepper.providers import transport
from stepper.workers import pools
from tests.support.redis_server import RESERVED_DATABASES


@pytest.fixture
def restore_state_pool_size() -> Any:
    before, http_before = connections._max_connections, transport._pool_size
    yield
    connections.configure_max_connections(before)
    transport.configure_pool(http_before)


def test_every_redis_pool_is_widened_to_the_concurrency_plus_headroom(restore_state_pool_size: None) -> None:
    app = Celery(set_as_current=False)
    app.conf.broker_transport_options = {"visibility_timeout": 600}
    pools.size_for_concurrency(app.conf, 1000)
    assert app.conf.broker_transport_options == {"visibility_timeout": 600, "max_connections": 1000 + pools.HEADROOM}
    assert app.conf.redis_max_connections == 1000 + pools.HEADROOM
    client = connections.client_for("redis://127.0.0.1:1/0")  # never connects: only its pool is read
    assert client.connection_pool.max_connections == 1000 + pools.HEADROOM
    assert transport._pool_size == 1000


def test_a_deployments_larger_limits_are_kept(restore_state_pool_size: None) -> None:
    app = Celery(set_as_current=False)
    app.conf.broker_transport_options = {"max_connections": 5000}
    app.conf.redis_max_connections = 4000
    pools.size_for_concurrency(app.conf, 32)
    assert app.conf.broker_transport_options["max_connections"] == 5000
    assert app.conf.redis_max_connections == 4000


@pytest.mark.parametrize("configured", [None, 3])
def test_a_small_worker_still_gets_kombus_default_or_more(
    configured: int | None, restore_state_pool_size: None
) -> None:
    app = Celery(set_as_current=False)
    app.conf.broker_transport_options = {} if configured is None else {"max_connections": configured}
    pools.size_for_concurrency(app.conf, 1)
    assert app.conf.broker_transport_options["max_connections"] == 1 + pools.HEADROOM


# A gevent process with more than 1,024 sockets open, polling the last one as kombu polls a broker connection
# rebuilt under load. It prints what happened.
HIGH_FD_POLL = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()
    import resource, socket, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    from kombu.utils import eventio
    from stepper.workers import pools
    if sys.argv[1] == "patched":
        pools.poll_without_fd_limit()
    held = [socket.socketpair() for _ in range(600)]
    reader, writer = held[-1]
    assert reader.fileno() > 1023, reader.fileno()
    writer.send(b"x")
    poller = eventio.poll()
    poller.register(reader, eventio.READ)
    try:
        print(poller.poll(1.0))
    except ValueError as exc:
        print("refused:", exc)
    """
)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("unpatched", "refused: filedescriptor out of range in select()"), ("patched", "[(")],
)
def test_gevent_workers_poll_sockets_above_fd_1023(mode: str, expected: str) -> None:
    """Unpatched, kombu's greenlet poller cannot watch such a socket (the fault a 1,000-greenlet worker hit);
    patched, it reports the socket readable."""
    done = subprocess.run(
        [sys.executable, "-c", HIGH_FD_POLL, mode], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(expected), done.stdout


# A gevent process consuming with a prefetch of one (a full pool after the first message), as a gevent worker's
# consumer loop does: the first message's acknowledgement is sent from another greenlet while the consumer waits.
# It prints how many messages it received, or "timed out" with that count.
FULL_POOL_REFILL = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()
    import socket, sys
    import gevent
    from kombu import Connection, Exchange, Queue
    from stepper.workers import pools
    url, mode, timeout_s, transport = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    if mode == "patched":
        pools.poll_without_fd_limit()
        pools.refill_promptly_when_full()
    queue = Queue("refill", Exchange("refill"), "refill")
    received = []
    with Connection(url, transport=transport) as connection:
        with connection.Producer() as producer:
            for number in range(2):
                producer.publish({"n": number}, exchange=queue.exchange, routing_key="refill", declare=[queue])
        with connection.Consumer(queue, callbacks=[lambda body, message: received.append(message)], prefetch_count=1):
            connection.drain_events(timeout=60)
            cycle = connection.transport.cycle
            (channel,) = cycle._channels
            kombu_poll, waits_full = cycle.poller.poll, []

            def poll(timeout):
                waits_full.append(not channel.qos.can_consume())
                return kombu_poll(timeout)

            cycle.poller.poll = poll

            def finish():  # a task's greenlet: it runs a while, the consumer waiting, then acknowledges
                gevent.sleep(0.3)
                received[0].ack()

            gevent.spawn(finish)
            try:
                connection.drain_events(timeout=timeout_s)
            except socket.timeout:
                print("timed out", len(received), "waits while full:", sum(waits_full))
            else:
                print(len(received), "waits while full:", sum(waits_full))
            for message in received[1:]:
                message.ack()
    """
)


STEPPERS = "stepper.infra.redis_transport:Transport"


@pytest.mark.parametrize(
    ("mode", "timeout_s", "expected"),
    [("unpatched", "1", "timed out 1 waits while full: 1"), ("patched", "60", "2 waits while full: 1")],
)
def test_a_full_gevent_pool_is_refilled_when_a_slot_frees(
    redis_server: Any, mode: str, timeout_s: str, expected: str
) -> None:
    """Unpatched, kombu waits out its whole timeout with the slot free (the fault: 2 s in a worker's loop);
    patched, it waits once, until the acknowledgement wakes it, and then reads the next message."""
    assert refill(redis_server, mode, timeout_s, STEPPERS) == expected


def test_under_kombus_own_transport_a_full_pool_waits_briefly_and_is_refilled(redis_server: Any) -> None:
    """kombu's own Redis transport (a deployment's ``broker_transport``) does not wake the waiting consumer: it
    asks again every ``FULL_POOL_WAIT_S`` while the pool is full, and so reads the next message too."""
    received, _, _, _, waits = refill(redis_server, "patched", "60", "redis").split()
    assert received == "2"
    assert int(waits) > 1


def refill(redis_server: Any, mode: str, timeout_s: str, transport: str) -> str:
    """What ``FULL_POOL_REFILL`` printed."""
    url = f"redis://127.0.0.1:{redis_server.port}/{RESERVED_DATABASES['fleet']}"
    done = subprocess.run(
        [sys.executable, "-c", FULL_POOL_REFILL, url, mode, timeout_s, transport],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_waker_is_written_once_per_wait_and_only_while_waiting() -> None:
    waker = pools.FullPoolWaker()
    waker.wake()  # the consumer is not waiting: nothing to tell
    assert not select.select([waker], [], [], 0)[0]
    waker.waiting = True
    waker.wake()
    waker.wake()
    assert select.select([waker], [], [], 0)[0]
    assert waker._reader.recv(16) == b"\0"
    waker.waiting = True
    waker.wake()
    waker.drain()
    assert not select.select([waker], [], [], 0)[0]


def test_other_pools_keep_kombus_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    before = kombu_redis.MultiChannelPoller.get
    monkeypatch.setattr(pools, "detect_environment", lambda: "default")
    pools.refill_promptly_when_full()
    assert kombu_redis.MultiChannelPoller.get is before
