"""What every route needs, made once per gateway: settings, the key limiter, the redactor, the metrics.

Routes reach it through FastAPI dependencies: :func:`gateway` (the state), :func:`caller` (authenticated, or
401), :func:`limited` (authenticated and within the key's requests per minute, or 429).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis import Redis
from starlette.concurrency import run_in_threadpool

from stepper.gateway.auth import ANONYMOUS, Caller, KeyLimiter, RateLimitExceeded, match_key
from stepper.gateway.endings import EndingChecks
from stepper.gateway.errors import ApiError
from stepper.gateway.metrics import GatewayMetrics
from stepper.guards.spend import GATEWAY_KEY_HEADER, Budgets, lines_of
from stepper.infra import inflight
from stepper.infra.redaction import Redactor
from stepper.infra.stream_hub import StreamHub
from stepper.settings import StepperSettings

log = logging.getLogger("stepper.gateway")


@dataclass
class Gateway:
    settings: StepperSettings
    unauthenticated: bool
    redis: Redis
    celery: Any
    limiter: KeyLimiter
    redactor: Redactor
    metrics: GatewayMetrics
    budgets: Budgets
    #: Follows the task streams this gateway relays, for all of them over one Redis connection.
    streams: StreamHub
    #: Asks whether the tasks of silent streams ended without writing them, many at once.
    endings: EndingChecks


# The dependencies that never block are coroutines: FastAPI runs a plain ``def`` dependency in its thread pool, a
# thread hop (and one of forty threads) per request for what takes microseconds.
async def gateway(request: Request) -> Gateway:
    state: Gateway = request.app.state.gateway
    return state


_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <key from `stepper gateway new-key`>")


async def caller(
    request: Request,
    state: Annotated[Gateway, Depends(gateway)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Caller:
    if state.unauthenticated:
        return Caller(ANONYMOUS)
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise ApiError(401, "missing API key: send Authorization: Bearer <key>", "invalid_api_key", auth=True)
    found = match_key(credentials.credentials, state.settings.gateway.key_hashes)
    if found is None:
        # The path and the client, never the key offered.
        log.warning("refused an unknown API key for %s from %s", request.url.path, _client(request))
        state.metrics.refused.labels("unknown", "unauthorised").inc()
        raise ApiError(401, "invalid API key", "invalid_api_key", auth=True)
    return found


async def admit(state: Gateway, who: Caller, tokens: int = 0) -> None:
    """:func:`admit_now` in a worker thread (it asks Redis)."""
    await run_in_threadpool(admit_now, state, who, tokens)


def admit_now(state: Gateway, who: Caller, tokens: int = 0) -> None:
    """Let the caller submit work: refuse a key whose spend budget is spent (429 ``insufficient_quota``, as
    OpenAI answers an account out of credit), then charge one request and ``tokens`` to the key's rate limits
    (429 ``rate_limit_exceeded``). Blocking: one thread hop for both checks."""
    _check_budget(state, who)
    _charge(state, who, tokens)


@contextmanager
def admitting(state: Gateway, who: Caller, tokens: int = 0) -> Iterator[None]:
    """:func:`admit_now` for the one task the block submits, with the rate-limit charge asked by that task's
    publish in its own round trip (:data:`stepper.infra.inflight.admitting`), or alone before a publish that
    cannot carry it and after a block that published nothing (a cached answer). A refusal raises and nothing is
    published. Blocking: the admission and the submission in one thread hop (a streamed chat's first token waits
    on both)."""
    _check_budget(state, who)
    admission = state.limiter.admission(who, tokens)
    token = inflight.admitting.set(admission)
    try:
        yield
        if admission is not None:
            admission.ask()  # asked by the publish already: only a refusal something swallowed is raised again
    except RateLimitExceeded:
        state.metrics.refused.labels(who.identity, "rate_limited").inc()
        raise
    finally:
        inflight.admitting.reset(token)


def _check_budget(state: Gateway, who: Caller) -> None:
    lines = lines_of("key", who.identity, state.settings.gateway.budget_for(who.identity))
    if lines and (spent := state.budgets.exhausted(lines)) is not None:
        state.metrics.refused.labels(who.identity, "budget_exhausted").inc()
        retry_after = str(max(1, math.ceil(spent.resets_in_s)))
        raise ApiError(429, f"{spent.message()}", "insufficient_quota", headers={"Retry-After": retry_after})


def _charge(state: Gateway, who: Caller, tokens: int = 0) -> None:
    try:
        state.limiter.admit(who, tokens)
    except RateLimitExceeded:
        state.metrics.refused.labels(who.identity, "rate_limited").inc()
        raise


async def limited(state: Annotated[Gateway, Depends(gateway)], who: Annotated[Caller, Depends(caller)]) -> Caller:
    """An authenticated caller, charged one request against its key's limit (reading work is never refused for
    its budget)."""
    await run_in_threadpool(_charge, state, who)
    return who


def submitted_by(who: Caller) -> dict[str, str]:
    """Celery headers that tell the workers which key submitted a task, so they charge its spend to it."""
    return {GATEWAY_KEY_HEADER: who.identity}


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"
