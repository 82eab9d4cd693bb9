"""Pools sized from the worker's concurrency, and kombu's poller under gevent: each fault reproduced first."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery
from kombu.transport import redis as kombu_redis

from stepper.infra import connections
from stepper.providers import transport
from stepper.workers import pools


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


def test_a_full_gevent_pool_waits_briefly_for_its_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """kombu waits as long as the consumer loop allows (2 s) while the pool is full, a finished task's slot empty
    meanwhile; a gevent worker's waits at most ``FULL_POOL_WAIT_S`` then, and as long as asked otherwise."""
    asked: list[float | None] = []
    monkeypatch.setattr(
        kombu_redis.MultiChannelPoller, "get", lambda _poller, _callback, timeout=None: asked.append(timeout)
    )
    monkeypatch.setattr(pools, "detect_environment", lambda: "gevent")
    pools.refill_promptly_when_full()
    full = SimpleNamespace(active_queues=["chat"], qos=SimpleNamespace(can_consume=lambda: False))
    room = SimpleNamespace(active_queues=["chat"], qos=SimpleNamespace(can_consume=lambda: True))
    kombu_redis.MultiChannelPoller.get(SimpleNamespace(_channels=[full]), None, 2.0)
    kombu_redis.MultiChannelPoller.get(SimpleNamespace(_channels=[room]), None, 2.0)
    assert asked == [pools.FULL_POOL_WAIT_S, 2.0]


def test_other_pools_keep_kombus_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    before = kombu_redis.MultiChannelPoller.get
    monkeypatch.setattr(pools, "detect_environment", lambda: "default")
    pools.refill_promptly_when_full()
    assert kombu_redis.MultiChannelPoller.get is before
