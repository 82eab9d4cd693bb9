"""stepper's own Redis clients: how their connections name themselves, and what making one costs."""

from __future__ import annotations

import kombu
import pytest
import redis
import redis.utils
from kombu import Connection

from stepper import __version__
from stepper.infra.connections import client_for
from stepper.infra.redis_transport import Transport
from tests.support.redis_server import RedisServer


def metadata_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each time redis-py reads its own version from the package metadata (``redis.utils.get_lib_version``)."""
    reads: list[str] = []

    def read() -> str:
        reads.append("redis")
        return redis.__version__

    monkeypatch.setattr(redis.utils, "get_lib_version", read)
    return reads


def test_a_new_connection_reads_no_package_metadata_and_names_stepper(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = metadata_reads(monkeypatch)
    client = client_for(f"redis://127.0.0.1:{redis_server.port}/5")
    pool = client.connection_pool
    connections = [pool.get_connection() for _ in range(3)]  # a task's first commands, three threads at once
    try:
        assert reads == []
        names = {getattr(connection.driver_info, "formatted_name", None) for connection in connections}
        assert names == {f"redis-py(stepper_v{__version__})"}
    finally:
        for connection in connections:
            pool.release(connection)


def test_the_broker_connections_name_kombu_and_stepper(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = metadata_reads(monkeypatch)
    with Connection(f"redis://127.0.0.1:{redis_server.port}/6", transport=Transport) as connection:
        channel = connection.default_channel
        channel.client.ping()
        made = channel.client.connection_pool.get_connection()
        try:
            name = getattr(made.driver_info, "formatted_name", None)
            assert name == f"redis-py(kombu_v{kombu.__version__};stepper_v{__version__})"
        finally:
            channel.client.connection_pool.release(made)
    assert reads == []
