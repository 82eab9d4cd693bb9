"""stepper's kombu Redis transport hands out one redis-py client per pool, and still works as kombu's."""

from __future__ import annotations

import redis
from kombu import Connection

from stepper.infra.redis_transport import Channel, Transport
from tests.support.redis_server import RedisServer


def test_a_channel_reuses_its_client_until_its_pool_changes(redis_server: RedisServer) -> None:
    with Connection(f"redis://127.0.0.1:{redis_server.port}/7", transport=Transport) as connection:
        channel = connection.default_channel
        assert isinstance(channel, Channel)
        first = channel._create_client()
        assert channel._create_client() is first
        # The asynchronous client is the one kombu pins the BRPOP connection on: never shared.
        assert channel._create_client(asynchronous=True) is not channel._create_client(asynchronous=True)
        channel._pool = None  # what kombu does when it drops its pools after a connection error
        assert channel._create_client() is not first
        assert channel._create_client().connection_pool is channel.pool


def test_messages_go_through_and_acks_clear_the_unacked_hash(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    with Connection(f"redis://127.0.0.1:{redis_server.port}/0", transport=Transport) as connection:
        queue = connection.SimpleQueue("reused-clients")
        for number in range(3):
            queue.put({"number": number})
        received = [queue.get(timeout=5) for _ in range(3)]
        assert [message.payload["number"] for message in received] == [0, 1, 2]
        assert redis_client.hlen("unacked") == 3
        for message in received:
            message.ack()
        assert redis_client.hlen("unacked") == 0
        queue.close()
