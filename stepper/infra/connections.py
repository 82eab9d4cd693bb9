"""Every Redis client stepper makes for itself, and the one retry policy they share.

Celery's broker and result-backend connections are Celery's; these are the clients for the fleet's own state
(breakers, rate limits, streams, dead letters, leases) and for the result cache, on a plain Redis
(``redis://``, ``rediss://``) or the master a Sentinel group names (``sentinel://...?master_name=``). Each is
made on first use in the process that uses it, so a prefork child never inherits its parent's sockets, and
``import stepper`` stays cheap.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import redis
from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from stepper import __version__ as STEPPER_VERSION
from stepper.brokers import parse_sentinel_url, scheme_of
from stepper.config import current_config, current_settings, resolve_state_url

#: Seconds to wait for a TCP connection to Redis, and for one command's answer.
CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0
#: Connections each client may open (redis-py's own default since 8.0 is 100, beyond which a command raises
#: ``MaxConnectionsError`` rather than wait); a worker raises it to its concurrency plus headroom at start-up.
_max_connections = 100


def configure_max_connections(size: int) -> None:
    """Let each client of this process open ``size`` connections (called at worker start-up, before any
    client is made: one per concurrent task, so a gevent pool of 1,000 never runs out)."""
    global _max_connections  # noqa: PLW0603  (one setting per process, set once at worker start-up)
    _max_connections = max(1, size)


def riding_out(wait_s: float) -> Retry:
    """Retries on connection errors lasting about ``wait_s`` seconds in all: backoff doubling from 50 ms to 1 s,
    so a restarting Redis is used again within a second of answering. Always one quick retry: a pooled
    connection that went stale (Redis restarted since) reconnects instead of failing."""
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=int(wait_s) + 4 if wait_s else 1)


@cache
def driver_params(*upstream: tuple[str, str]) -> dict[str, Any]:
    """How a connection names itself to Redis (``CLIENT SETINFO``, shown by ``CLIENT LIST``): redis-py's
    ``DriverInfo`` naming stepper, then each ``(name, version)`` of ``upstream`` in front of it, as in
    ``redis-py(kombu_v5.7.0;stepper_v0.1.0)``. Pass the result to a client or a pool as keyword arguments.

    Made once per process and shared by every connection: without one, a redis-py that has ``DriverInfo``
    builds one for each new connection, reading redis-py's own version from the package metadata (0.3 ms of
    CPU in a warm loop here, more in a cold process), which a worker paid for every connection its pools
    opened as its first tasks ran. An older redis-py (no ``DriverInfo``) gets the same name as ``lib_name``
    and ``lib_version``, as Celery's Redis backend does (``RedisBackend._add_driver_info``)."""
    try:
        from redis import DriverInfo  # redis-py from the end of 2025 on
    except ImportError:
        names = ";".join(f"{name}_v{version}" for name, version in (*upstream, ("stepper", STEPPER_VERSION)))
        return {"lib_name": f"redis-py({names})", "lib_version": redis.__version__}
    info = DriverInfo(lib_version=redis.__version__).add_upstream_driver("stepper", STEPPER_VERSION)
    for name, version in reversed(upstream):  # the last added comes first
        info.add_upstream_driver(name, version)
    return {"driver_info": info}


@cache
def _client(url: str, pid: int, wait_s: float, max_connections: int) -> Redis:
    del pid  # part of the cache key: a forked child makes its own client
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "decode_responses": False,  # pybreaker's Redis storage needs bytes
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "health_check_interval": 30,
        "retry": riding_out(wait_s),
        **driver_params(),
    }
    if scheme_of(url) != "sentinel":
        return Redis.from_url(url, **options)
    # Every new connection asks the sentinels where the master is now: after a failover, the retry's reconnect
    # reaches the promoted replica.
    where = parse_sentinel_url(url)
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(where.sentinels),
        sentinel_kwargs={"socket_connect_timeout": CONNECT_TIMEOUT_S, "socket_timeout": SOCKET_TIMEOUT_S},
    )
    master: Redis = sentinels.master_for(  # type: ignore[no-untyped-call]
        where.master_name, db=where.db, password=where.password, **options
    )
    return master


def state_url() -> str:
    """Where the fleet's state lives (redis://, rediss:// or sentinel://): see stepper.config.resolve_state_url."""
    return resolve_state_url(current_config())


def state_redis() -> Redis:
    """The Redis holding fleet-wide state. One quick retry only: the guards fail open when Redis is down, and a
    task must not stall seconds deciding so."""
    return client_for(state_url())


def client_for(url: str) -> Redis:
    """This process's client of the Redis at ``url`` (an app's own state Redis, say), with the same policy."""
    return _client(url, os.getpid(), 0.0, _max_connections)


def broker_redis(conf: Any) -> Redis:
    """This process's client of the broker's Redis, for an app whose broker is a Redis (a Celery ``app.conf``:
    its ``broker_url``, and the Sentinel master's name from ``broker_transport_options``)."""
    url = str(conf.broker_url)
    master = (conf.broker_transport_options or {}).get("master_name")
    if scheme_of(url) == "sentinel" and master:
        url = f"{url}?master_name={master}"
    return client_for(url)


def redis_now_ms(client: Redis) -> int:
    """Redis's clock in milliseconds: the one clock every host of the fleet agrees on."""
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def as_text(value: bytes | str) -> str:
    """A Redis reply as text (stepper's clients answer bytes)."""
    return value.decode() if isinstance(value, bytes) else value


def cache_redis(wait_s: float = 0.0) -> Redis:
    """The result cache's Redis (``stepper_cache["url"]``, else the state Redis). ``wait_s``: how long a command
    waits for a restarting Redis: a worker waits (a result it computed is still stored, so a redelivery finds
    it); a producer fails fast and says so."""
    return _client(current_settings().cache.url or state_url(), os.getpid(), wait_s, _max_connections)
