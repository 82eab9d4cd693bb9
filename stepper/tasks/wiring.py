"""The chain executor of this worker process, wired once: settings, registry, and the guard over the state Redis."""

from __future__ import annotations

import os
from functools import cache

from stepper.chain import ChainExecutor
from stepper.config import current_settings
from stepper.guards.admission import RedisGuardBackend
from stepper.guards.breaker import ProviderGuard
from stepper.infra.connections import state_redis
from stepper.registry import build_registry


@cache
def _executor(pid: int) -> ChainExecutor:
    del pid  # part of the cache key: a forked child builds its own
    settings = current_settings()
    guard = ProviderGuard(
        RedisGuardBackend(state_redis()),
        settings.breaker,
        settings.retry.max_inline_wait_s,
        max_cooldown_s=settings.retry.task_countdown_cap_s,
    )
    return ChainExecutor(settings, build_registry(settings), guard)


def current_executor() -> ChainExecutor:
    return _executor(os.getpid())
