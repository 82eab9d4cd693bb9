"""The chain executor of this worker process, wired once: settings, registry, and the guard, the deployment router
and the spend ledger over the state Redis."""

from __future__ import annotations

import os
from functools import cache

from stepper.chain import ChainExecutor
from stepper.config import current_settings
from stepper.guards.admission import RedisGuardBackend
from stepper.guards.breaker import ProviderGuard
from stepper.guards.routing import RedisRouteBackend, Router
from stepper.guards.spend import Budgets, RedisSpendLedger
from stepper.infra.connections import state_redis
from stepper.registry import build_registry


@cache
def _executor(pid: int) -> ChainExecutor:
    del pid  # part of the cache key: a forked child builds its own
    settings = current_settings()
    client = state_redis()
    guard = ProviderGuard(
        RedisGuardBackend(client),
        settings.breaker,
        settings.retry.max_inline_wait_s,
        max_cooldown_s=settings.retry.task_countdown_cap_s,
    )
    router = Router(RedisRouteBackend(client))
    budgets = Budgets(RedisSpendLedger(client), settings)
    return ChainExecutor(settings, build_registry(settings), guard, router=router, budgets=budgets)


def current_executor() -> ChainExecutor:
    return _executor(os.getpid())
