"""Per-process singletons: the Redis client for fleet state and the chain executor.

Each is made on first use in the process that uses it, so a prefork child never inherits a parent's
sockets, and ``import stepper`` stays cheap.
"""

from __future__ import annotations

import os
from functools import cache

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from stepper.artifacts import ArtifactStore, LocalArtifactStore
from stepper.chain import ChainExecutor
from stepper.config import current_config, current_settings
from stepper.guards.admission import RedisGuardBackend
from stepper.guards.breaker import ProviderGuard
from stepper.registry import build_registry


@cache
def _redis_client(url: str, pid: int) -> Redis:
    del pid  # part of the cache key: a forked child makes its own client
    # One quick retry: the guards fail open when Redis is down, and a task must not stall seconds deciding so.
    return Redis.from_url(
        url,
        decode_responses=False,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    )


def riding_out(wait_s: float) -> Retry:
    """Retries on connection errors lasting about ``wait_s`` seconds in all: backoff doubling from 50 ms to 1 s,
    so a restarting Redis is used again within a second of answering. Always one quick retry: a pooled
    connection that went stale (Redis restarted since) reconnects instead of failing."""
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=int(wait_s) + 4 if wait_s else 1)


def state_redis() -> Redis:
    """The Redis holding fleet-wide state (breakers, rate limits): the broker's, unless configured otherwise."""
    config = current_config()
    return _redis_client(config.get("stepper_state_url") or config["broker_url"], os.getpid())


_artifact_store_override: list[ArtifactStore] = []


@cache
def _artifact_store(pid: int) -> ArtifactStore:
    del pid
    return LocalArtifactStore.from_settings(current_settings().artifacts)


def artifact_store() -> ArtifactStore:
    """Where this process stores audio and thumbnails: the configured directory, unless replaced."""
    return _artifact_store_override[-1] if _artifact_store_override else _artifact_store(os.getpid())


def set_artifact_store(store: ArtifactStore | None) -> None:
    """Replace the artifact store of this process (an object store, a test's directory); None restores it."""
    _artifact_store_override.clear()
    if store is not None:
        _artifact_store_override.append(store)


@cache
def _executor(pid: int) -> ChainExecutor:
    del pid
    settings = current_settings()
    guard = ProviderGuard(RedisGuardBackend(state_redis()), settings.breaker, settings.retry.max_inline_wait_s)
    return ChainExecutor(settings, build_registry(settings), guard)


def current_executor() -> ChainExecutor:
    return _executor(os.getpid())
