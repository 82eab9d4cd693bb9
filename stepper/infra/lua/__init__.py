"""Redis Lua scripts, one file each beside this module, read once per process, and called without redis-py's
per-command machinery.

Each script says in its first lines what its KEYS and ARGV are. A script that builds on another (the
dead-letter store's add and remove both use its ``drop`` function) is sent as the files joined in order.

The scripts are the hot path of every task (the cache probe with its admission, the result store, the
publish's journal), so :class:`LuaScript` sends them on a connection of the client's pool that it checks out
itself rather than through redis-py's ``Redis.evalsha``: redis-py 8's checkout, release and per-command
telemetry cost about 50 µs of CPU per call on top of the 40 µs the round trip itself costs (measured with
``time.process_time`` against a local Redis). The connections and their pool are redis-py's own, and a call
retries with the client's policy exactly as ``execute_command`` does. :meth:`LuaScript.send` sends a call and
leaves its reply to be read later, so that the caller's own work runs while Redis answers (a task's admission,
sent as the task starts: stepper.guards.breaker.AdmissionAhead).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, partial
from importlib import resources
from typing import Any

from redis import Redis
from redis.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.sentinel import SentinelConnectionPool


@cache
def source(*names: str) -> str:
    """The text of the scripts ``names`` (file names without ``.lua``), joined in order."""
    folder = resources.files(__name__)
    return "\n".join(folder.joinpath(f"{name}.lua").read_text(encoding="utf-8") for name in names)


@cache
def script(client: Redis, *names: str) -> LuaScript:
    """The scripts ``names`` joined, to call on ``client``'s Redis; made once per client: callers on a hot path
    (every submission) must not hash the text again at each call."""
    return LuaScript(client, source(*names))


class LuaScript:
    """A script called by its SHA1 (``EVALSHA``), sent whole (``EVAL``) when Redis does not know it yet (a
    restart, a failover), as redis-py's ``Script`` does.

    ``script(keys=[...], args=[...])`` returns the script's reply as redis-py parses it (bytes, integers,
    lists). Raises ``ResponseError`` for an error the script returned or raised, and redis-py's
    ``ConnectionError`` or ``TimeoutError`` once the client's retry policy (``Redis(retry=...)``) gives up.
    """

    def __init__(self, client: Redis, text: str) -> None:
        #: redis-py's own, for its SHA1 and text, and for the clients whose pool we do not check out of.
        self._script = client.register_script(text)
        pool = getattr(client, "connection_pool", None)
        #: None for a client whose pool we cannot share (redis-py's RedisCluster routes each call by its keys'
        #: slot; a BlockingConnectionPool keeps its own books): the call then goes through redis-py's Script.
        self._pool: ConnectionPool | None = pool if type(pool) in SHARED_POOLS else None

    @property
    def sha(self) -> str:
        return str(self._script.sha)

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        pool = self._pool
        if pool is None:
            return self._script(keys=keys, args=args)
        connection = _take(pool)
        try:
            # The client's retry, as Redis.execute_command applies it: a connection gone stale (Redis restarted
            # since) reconnects and the call runs again, with the policy's backoff between tries.
            return connection.retry.call_with_retry(
                partial(self._run, connection, keys, args),
                lambda _error: connection.disconnect(),  # type: ignore[no-untyped-call]
            )
        except ResponseError:  # its reply was read whole: the connection is fine
            raise
        except BaseException:  # an answer may still be due on it (a timeout, an interruption)
            connection.disconnect()  # type: ignore[no-untyped-call]
            raise
        finally:
            _give_back(pool, connection)

    def send(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> PendingReply:
        """Send the call now and return its :class:`PendingReply`, to read later: what the caller does meanwhile runs
        while Redis does. The connection stays checked out until the reply is read (``PendingReply.get``). A client
        whose pool is not shared calls at once; a call that could not be sent is made again, with the client's
        retry, when its reply is read."""
        pool = self._pool
        if pool is None:
            return PendingReply(self, keys, args, answer=self(keys, args))
        connection = _take(pool)
        try:
            self._send(connection, keys, args)
        except (RedisConnectionError, RedisTimeoutError):
            _drop(pool, connection)
            return PendingReply(self, keys, args)  # made when it is read, with the client's retry
        except BaseException:
            _drop(pool, connection)
            raise
        return PendingReply(self, keys, args, pool=pool, connection=connection)

    def _run(self, connection: AbstractConnection, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        self._send(connection, keys, args)
        return self._read(connection, keys, args)

    def _send(self, connection: AbstractConnection, keys: Sequence[Any], args: Sequence[Any]) -> None:
        # As the pool's checkout does: a Sentinel-managed connection finds its master in connect(), not in
        # send_command; and a connection with something to read (a closed socket, an answer left unread by a
        # caller interrupted) is made anew, or its stale answer would be taken for this one.
        connection.connect()  # type: ignore[no-untyped-call]
        if connection.can_read():
            connection.disconnect()  # type: ignore[no-untyped-call]
            connection.connect()  # type: ignore[no-untyped-call]
        connection.send_command("EVALSHA", self.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]

    def _read(self, connection: AbstractConnection, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return connection.read_response()
        except NoScriptError:
            connection.send_command("EVAL", self._script.script, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
            return connection.read_response()


_UNREAD = object()


class PendingReply:
    """The reply of a call sent by :meth:`LuaScript.send`, read once by :meth:`get`."""

    def __init__(
        self,
        script: LuaScript,
        keys: Sequence[Any],
        args: Sequence[Any],
        *,
        answer: Any = _UNREAD,
        pool: ConnectionPool | None = None,
        connection: AbstractConnection | None = None,
    ) -> None:
        self._script, self._keys, self._args = script, keys, args
        self._answer = answer
        self._pool, self._connection = pool, connection

    def get(self) -> Any:
        """The script's reply, read from the connection it was sent on (which then goes back to its pool). Raises
        as :meth:`LuaScript.__call__` does. A connection that failed while the reply was due is dropped and the
        call made again with the client's retry, as ``execute_command`` retries a call whose connection failed:
        at most once more in Redis, as there."""
        if self._answer is not _UNREAD:
            return self._answer
        pool, connection = self._pool, self._connection
        self._pool = self._connection = None
        if pool is None or connection is None:  # not sent: made now
            self._answer = self._script(self._keys, self._args)
            return self._answer
        try:
            self._answer = self._script._read(connection, self._keys, self._args)
        except ResponseError:  # its reply was read whole: the connection is fine
            _give_back(pool, connection)
            raise
        except (RedisConnectionError, RedisTimeoutError):
            _drop(pool, connection)
            self._answer = self._script(self._keys, self._args)
            return self._answer
        except BaseException:  # an answer may still be due on it (an interruption)
            _drop(pool, connection)
            raise
        _give_back(pool, connection)
        return self._answer


#: The pools LuaScript checks connections out of itself: redis-py's ConnectionPool, and Sentinel's, which keeps
#: the same books (``_lock``, ``_available_connections``, ``_in_use_connections``).
SHARED_POOLS = (ConnectionPool, SentinelConnectionPool)


def _take(pool: ConnectionPool) -> AbstractConnection:
    """A connection of ``pool``, as ``ConnectionPool.get_connection`` hands it out, without its per-checkout
    telemetry: under the pool's lock, counted in its ``max_connections`` (``MaxConnectionsError`` past it),
    closed by its ``disconnect()``, and set aside by its fork check in a forked child."""
    pool._checkpid()
    with pool._lock:
        try:
            connection: AbstractConnection = pool._available_connections.pop()
        except IndexError:
            connection = pool.make_connection()  # type: ignore[assignment]  # a Connection, typed as its interface
        pool._in_use_connections.add(connection)
    return connection


def _drop(pool: ConnectionPool, connection: AbstractConnection) -> None:
    """``connection`` closed (an answer may still be due on it), then back in ``pool``, which connects it anew."""
    connection.disconnect()  # type: ignore[no-untyped-call]
    _give_back(pool, connection)


def _give_back(pool: ConnectionPool, connection: AbstractConnection) -> None:
    """``connection`` back among ``pool``'s available ones, as ``ConnectionPool.release`` puts it."""
    with pool._lock:
        if connection in pool._in_use_connections:  # not after a fork reset the books
            pool._in_use_connections.remove(connection)
            pool._available_connections.append(connection)


@dataclass(frozen=True)
class ScriptCall:
    """A call of a script's function (admission.lua's ``admit``, say) for another script to make in its own round
    trip: the function's keys and arguments."""

    keys: list[str]
    args: list[str | int | float]
