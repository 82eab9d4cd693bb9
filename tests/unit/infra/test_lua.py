"""Lua scripts sent on connections LuaScript checks out of the client's pool itself, against a real redis-server."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from shutil import which

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stepper.infra.connections import riding_out
from stepper.infra.lua import LuaScript
from tests.support.redis_server import RedisServer

ECHO = "return {KEYS[1], ARGV[1]}"


def connections_to(server: RedisServer, name: str) -> list[str]:
    """The ids of the clients connected to ``server`` under ``name`` (the client name is set per connection)."""
    return [entry["id"] for entry in server.client().client_list() if entry["name"] == name]


def test_a_script_gets_its_keys_and_arguments_and_returns_the_reply(redis_client: redis.Redis) -> None:
    echo = LuaScript(redis_client, ECHO)
    assert echo(keys=["k"], args=["v"]) == [b"k", b"v"]
    assert echo(keys=["other"], args=[3]) == [b"other", b"3"]


def test_a_script_redis_forgot_is_sent_whole_and_known_again(redis_client: redis.Redis) -> None:
    echo = LuaScript(redis_client, ECHO)
    redis_client.script_flush()  # what a restarted Redis, or a promoted replica, knows
    assert echo(keys=["k"], args=["v"]) == [b"k", b"v"]
    assert redis_client.script_exists(echo.sha) == [True]


def test_an_error_of_the_script_is_raised_and_the_connection_kept(redis_server: RedisServer) -> None:
    client = redis.Redis(port=redis_server.port, client_name="lua-errors")
    failing = LuaScript(client, "return redis.error_reply('refused: ' .. ARGV[1])")
    echo = LuaScript(client, ECHO)
    assert echo(keys=["k"], args=["before"]) == [b"k", b"before"]
    (connection,) = connections_to(redis_server, "lua-errors")
    with pytest.raises(redis.ResponseError, match="refused: twice"):
        failing(args=["twice"])
    with pytest.raises(redis.ResponseError, match="refused: again"):
        failing(args=["again"])
    assert echo(keys=["k"], args=["after"]) == [b"k", b"after"]
    assert connections_to(redis_server, "lua-errors") == [connection]


def test_concurrent_calls_each_get_their_own_reply_on_no_more_connections_than_calls(
    redis_server: RedisServer,
) -> None:
    client = redis.Redis(port=redis_server.port, client_name="lua-threads")
    echo = LuaScript(client, ECHO)
    threads, calls = 8, 200
    wrong: list[tuple[str, object]] = []

    def call_many(name: str) -> None:
        for index in range(calls):
            reply = echo(keys=[name], args=[index])
            if reply != [name.encode(), str(index).encode()]:
                wrong.append((name, reply))

    workers = [threading.Thread(target=call_many, args=(f"thread-{number}",)) for number in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert wrong == []
    assert 1 <= len(connections_to(redis_server, "lua-threads")) <= threads


def test_a_call_that_timed_out_leaves_no_late_answer_for_the_next(redis_server: RedisServer) -> None:
    """A kept connection with an answer still due would hand the next call the previous one's reply."""
    client = redis.Redis(port=redis_server.port, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
    slow = LuaScript(
        client,
        "local t = redis.call('TIME') while true do local n = redis.call('TIME') "
        "if (n[1] - t[1]) * 1000000 + (n[2] - t[2]) > 400000 then return 'late' end end",
    )
    with pytest.raises(redis.TimeoutError):
        slow()
    assert LuaScript(client, ECHO)(keys=["k"], args=["on time"]) == [b"k", b"on time"]


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, which it may crash and restart."""
    server = RedisServer(which("redis-server") or "redis-server", tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_restarted_redis_is_used_again_through_the_stale_connection(own_server: RedisServer) -> None:
    client = redis.Redis(port=own_server.port, retry=riding_out(0.0))
    echo = LuaScript(client, ECHO)
    assert echo(keys=["k"], args=["before"]) == [b"k", b"before"]
    own_server.crash_and_restart()  # the kept connection is now dead, and Redis has no scripts
    assert echo(keys=["k"], args=["after"]) == [b"k", b"after"]


def test_a_forked_child_makes_its_own_connection_and_leaves_its_parents_alone(redis_server: RedisServer) -> None:
    """Two processes talking on one socket would read each other's replies."""
    client = redis.Redis(port=redis_server.port, client_name="lua-fork")
    echo = LuaScript(client, ECHO)
    assert echo(keys=["k"], args=["parent"]) == [b"k", b"parent"]
    (parents,) = connections_to(redis_server, "lua-fork")
    child = os.fork()
    if child == 0:  # pragma: no cover  (the child's exit status is the assertion)
        answered = echo(keys=["k"], args=["child"]) == [b"k", b"child"]
        os._exit(0 if answered and len(connections_to(redis_server, "lua-fork")) == 2 else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert echo(keys=["k"], args=["parent again"]) == [b"k", b"parent again"]
    assert connections_to(redis_server, "lua-fork") == [parents]


def test_closing_the_client_closes_the_connections_of_its_scripts(redis_server: RedisServer) -> None:
    """kombu drops its pools and tests close their clients: the scripts' sockets must go with them."""
    client = redis.Redis(port=redis_server.port, client_name="lua-close")
    echo = LuaScript(client, ECHO)
    assert echo(keys=["k"], args=["open"]) == [b"k", b"open"]
    assert len(connections_to(redis_server, "lua-close")) == 1
    client.close()
    assert connections_to(redis_server, "lua-close") == []
    assert echo(keys=["k"], args=["again"]) == [b"k", b"again"]  # a closed client's pool reconnects on use


def test_a_pool_with_books_of_its_own_goes_through_redis_pys_script(redis_server: RedisServer) -> None:
    pool = redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]
        port=redis_server.port, max_connections=2, client_name="lua-blocking"
    )
    echo = LuaScript(redis.Redis(connection_pool=pool), ECHO)
    assert echo(keys=["k"], args=["blocking"]) == [b"k", b"blocking"]
    assert len(connections_to(redis_server, "lua-blocking")) == 1
    pool.disconnect()  # the pool's own connection: nothing of the script's is left open
    assert connections_to(redis_server, "lua-blocking") == []


def test_calls_sent_ahead_each_hold_a_connection_until_their_reply_is_read(redis_server: RedisServer) -> None:
    client = redis.Redis(port=redis_server.port, client_name="lua-sent")
    echo = LuaScript(client, ECHO)
    first, second = echo.send(keys=["k"], args=["first"]), echo.send(keys=["k"], args=["second"])
    assert len(connections_to(redis_server, "lua-sent")) == 2
    assert echo(keys=["k"], args=["meanwhile"]) == [b"k", b"meanwhile"]  # on a third: both replies are still due
    assert second.get() == [b"k", b"second"]
    assert first.get() == [b"k", b"first"]
    assert first.get() == [b"k", b"first"]  # read once, kept
    assert len(client.connection_pool._in_use_connections) == 0
    assert len(connections_to(redis_server, "lua-sent")) == 3


def test_a_call_sent_ahead_of_a_flushed_script_cache_is_sent_whole(redis_client: redis.Redis) -> None:
    echo = LuaScript(redis_client, ECHO)
    redis_client.script_flush()
    assert echo.send(keys=["k"], args=["v"]).get() == [b"k", b"v"]


def test_an_error_of_a_script_sent_ahead_is_raised_when_its_reply_is_read(redis_client: redis.Redis) -> None:
    sent = LuaScript(redis_client, "return redis.error_reply('refused')").send()
    with pytest.raises(redis.ResponseError, match="refused"):
        sent.get()
    assert LuaScript(redis_client, ECHO)(keys=["k"], args=["after"]) == [b"k", b"after"]


def test_a_call_whose_connection_died_before_its_reply_is_made_again(own_server: RedisServer) -> None:
    client = redis.Redis(port=own_server.port, retry=riding_out(0.0))
    count = LuaScript(client, "return redis.call('INCR', KEYS[1])")
    assert count(keys=["n"]) == 1
    own_server.crash_and_restart()  # the kept connection is dead: the send fails, or the reply never comes
    assert count.send(keys=["n"]).get() == 1  # made on a new connection, once (Redis kept nothing)
    sent = count.send(keys=["n"])
    own_server.crash_and_restart()  # the reply due is lost with its connection
    assert sent.get() in (1, 2)  # made again: once more at most, as a command's retry would
