"""Probes and fleet views: /health (unauthenticated, for load balancers and Kubernetes), the detailed state,
queue depths, voices and Prometheus metrics (behind a key)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from celery.exceptions import TimeoutError as CeleryTimeout
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from stepper import __version__
from stepper.gateway.auth import Caller
from stepper.gateway.errors import ApiError
from stepper.gateway.state import Gateway, caller, gateway, limited
from stepper.ops.fleet import FleetState, queue_depths, read_fleet, worker_states

#: How long readiness waits for workers to answer Celery's broadcast (as `stepper health`): give probes 2 s or more.
PROBE_TIMEOUT_S = 1.0
VOICES_TIMEOUT_S = 30.0

probes = APIRouter(tags=["health"])
router = APIRouter(tags=["fleet"])


@probes.get("/health", summary="the gateway process answers")
async def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@probes.get("/health/live", summary="liveness: the gateway process answers")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@probes.get("/health/ready", summary="readiness: Redis answers and every queue has a consumer")
async def ready(state: Annotated[Gateway, Depends(gateway)]) -> JSONResponse:
    fleet = await run_in_threadpool(_fleet, state, PROBE_TIMEOUT_S)
    # An open breaker is not a reason to stop taking work: the chain falls back, and tasks wait in their queue.
    problems = [problem for problem in fleet.problems() if not problem.startswith("circuit breaker")]
    return JSONResponse({"ready": not problems, "problems": problems}, status_code=503 if problems else 200)


@router.get("/api/v1/health/detailed", summary="Redis, queues by priority, workers, breakers, rate-limit buckets")
async def detailed(
    state: Annotated[Gateway, Depends(gateway)], who: Annotated[Caller, Depends(limited)]
) -> dict[str, Any]:
    fleet = await run_in_threadpool(_fleet, state, 1.0)
    return {"healthy": not fleet.problems(), "problems": fleet.problems(), **asdict(fleet)}


@router.get("/api/v1/queue/status", summary="messages waiting per queue and priority, and consumers per queue")
async def queue_status(
    state: Annotated[Gateway, Depends(gateway)], who: Annotated[Caller, Depends(limited)]
) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        queues = _queue_names(state)
        depths = queue_depths(state.celery, queues)
        workers = worker_states(state.celery, 1.0)
        return {
            "queues": {
                queue: {
                    "waiting": sum(levels.values()),
                    "by_priority": levels,
                    "consumers": sum(queue in worker.queues for worker in workers),
                }
                for queue, levels in depths.items()
            }
        }

    return await run_in_threadpool(read)


@router.get("/api/v1/voices", summary="the voices of the speech providers, as the workers see them")
async def voices(state: Annotated[Gateway, Depends(gateway)], who: Annotated[Caller, Depends(limited)]) -> Any:
    """Asked of a speech worker (stepper.voices), which has the engines; the gateway host may not."""

    def ask() -> Any:
        try:
            return state.celery.send_task("stepper.voices").get(timeout=VOICES_TIMEOUT_S)
        except CeleryTimeout:
            raise ApiError(504, "no speech worker answered; is one consuming the 'speech' queue?", "timeout") from None

    return await run_in_threadpool(ask)


@router.get(
    "/metrics", summary="Prometheus text: the gateway's requests and the fleet's state", response_class=Response
)
async def metrics(state: Annotated[Gateway, Depends(gateway)], who: Annotated[Caller, Depends(caller)]) -> Response:
    # Authenticated (scrapers send a bearer key) but not rate limited: a scrape must never be refused.
    body = await run_in_threadpool(state.metrics.exposition)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


def _queue_names(state: Gateway) -> list[str]:
    return [queue.name for queue in state.celery.conf.task_queues]


def _fleet(state: Gateway, timeout_s: float) -> FleetState:
    return read_fleet(state.celery, state.redis, _queue_names(state), timeout_s=timeout_s)
