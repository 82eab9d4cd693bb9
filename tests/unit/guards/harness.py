"""The guard backends under test, and ways to look at and move their state without waiting for clocks."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from stepper.guards.admission import GuardBackend, Limits, MemoryGuardBackend, RedisGuardBackend
from stepper.infra.keys import breaker as breaker_namespace


@dataclass
class Harness:
    """A backend, and ways to look at and move its state without waiting for clocks."""

    kind: str
    backend: GuardBackend
    #: Another backend over the same state, as a second worker process (or host) would have.
    another_backend: Callable[[], GuardBackend]
    #: Breaker state as stored: ``closed``, ``open`` or ``half-open``.
    state: Callable[[str], str]
    #: Force a provider's circuit into ``state``, opened ``seconds_ago``.
    force: Callable[[str, str, float], None]
    #: Move the opening of a provider's circuit ``seconds`` into the past (as if the time had passed).
    age_opening: Callable[[str, float], None]


def memory_harness() -> Harness:
    backend = MemoryGuardBackend()

    def force(provider: str, state: str, seconds_ago: float) -> None:
        storage = backend.breaker_storage(provider)
        storage.state = state
        storage.opened_at = datetime.now(UTC) - timedelta(seconds=seconds_ago)

    def age_opening(provider: str, seconds: float) -> None:
        storage = backend.breaker_storage(provider)
        assert storage.opened_at is not None
        storage.opened_at = storage.opened_at - timedelta(seconds=seconds)

    return Harness(
        "memory",
        backend,
        lambda: backend,
        lambda provider: str(backend.breaker_storage(provider).state),
        force,
        age_opening,
    )


def breaker_key(provider: str, name: str) -> str:
    """pybreaker's keys for a provider, e.g. ``stepper:{openai}:breaker:pybreaker:state``."""
    return f"{breaker_namespace(provider)}:pybreaker:{name}"


def redis_harness(client: redis.Redis) -> Harness:
    def state(provider: str) -> str:
        value = client.get(breaker_key(provider, "state"))
        if value is None:
            return "closed"
        return value.decode() if isinstance(value, bytes) else str(value)

    def force(provider: str, state: str, seconds_ago: float) -> None:
        client.set(breaker_key(provider, "state"), state)
        client.set(breaker_key(provider, "opened_at"), int(time.time() - seconds_ago))

    def age_opening(provider: str, seconds: float) -> None:
        opened_at = client.get(breaker_key(provider, "opened_at"))
        assert opened_at is not None
        client.set(breaker_key(provider, "opened_at"), int(opened_at) - int(seconds))

    return Harness("redis", RedisGuardBackend(client), lambda: RedisGuardBackend(client), state, force, age_opening)


#: What redis-py sends on a connection of its own accord (redis.connection.Connection.on_connect, check_health).
CONNECTION_HANDSHAKE = frozenset({"HELLO", "AUTH", "CLIENT", "SELECT", "PING"})


def count_commands(client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every command sent from now on to ``client``'s Redis, through redis-py's ``execute_command`` or
    by stepper's scripts, which skip it (stepper.infra.lua); a pipeline's aside, and a new connection's handshake
    and health checks."""
    sent: list[str] = []
    where = client.connection_pool.connection_kwargs
    send: Callable[..., Any] = redis.Connection.send_command

    def counting(connection: redis.Connection, *args: Any, **options: Any) -> Any:
        same_redis = (connection.host, connection.port, connection.db) == (where["host"], where["port"], where["db"])
        if same_redis and str(args[0]) not in CONNECTION_HANDSHAKE:
            sent.append(str(args[0]))
        return send(connection, *args, **options)

    monkeypatch.setattr(redis.Connection, "send_command", counting)
    return sent


def settle(harness: Harness, limits: Limits, overspent: int, provider: str = "p") -> None:
    """Charge (or refund, when negative) tokens the way the guard does: inside the next admission."""
    harness.backend.admit(provider, limits, 0, reset_timeout_s=30.0, overspent=overspent)
