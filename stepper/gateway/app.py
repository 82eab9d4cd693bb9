"""The gateway application: ``create_app()`` wires settings, middleware, routes and error answers."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from stepper import __version__
from stepper.config import current_settings
from stepper.errors import ConfigError
from stepper.gateway import health, jobs, openai_compat, workflows
from stepper.gateway.auth import KeyLimiter
from stepper.gateway.endings import EndingChecks
from stepper.gateway.errors import install_error_handlers
from stepper.gateway.limits import BodySizeLimit
from stepper.gateway.metrics import GatewayMetrics, RequestMetrics
from stepper.gateway.state import Gateway
from stepper.guards.spend import Budgets, RedisSpendLedger
from stepper.infra.redaction import Redactor, configured_secrets
from stepper.infra.stream_hub import StreamHub
from stepper.settings import StepperSettings


def create_app(
    settings: StepperSettings | None = None, *, unauthenticated: bool = False, celery: Any = None
) -> FastAPI:
    """A gateway over this process's fleet configuration. Without keys it serves only if ``unauthenticated``."""
    from stepper.infra.connections import state_redis

    settings = current_settings() if settings is None else settings
    options = settings.gateway
    if not options.key_hashes and not unauthenticated:
        raise ConfigError(
            "no gateway API keys configured: set STEPPER_GATEWAY_KEY_HASHES (digests from `stepper gateway new-key`) "
            "or stepper_gateway['key_hashes'], or run unauthenticated for local use"
        )
    if celery is None:
        from stepper.celery import app as celery
    redis = state_redis()
    metrics = GatewayMetrics(celery, redis, settings)
    # FastAPI's /docs and /redoc load their scripts from a CDN: blank without internet. FastAPIOffline serves
    # the same pages with Swagger UI and ReDoc from its package (under /static-offline-docs).
    app = FastAPIOffline(
        title="stepper gateway",
        version=__version__,
        description=(
            "HTTP in front of stepper's task queues: jobs of every kind, workflows, OpenAI-compatible chat, health."
        ),
    )
    app.state.gateway = Gateway(
        settings=settings,
        unauthenticated=unauthenticated,
        redis=redis,
        celery=celery,
        limiter=KeyLimiter(redis, options.rpm, options.tpm),
        redactor=Redactor(configured_secrets()),
        metrics=metrics,
        budgets=Budgets(RedisSpendLedger(redis), settings),
        streams=StreamHub(redis),
        endings=EndingChecks(celery),
    )
    install_error_handlers(app)
    app.include_router(health.probes)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(openai_compat.router)
    app.include_router(workflows.router)
    # Outermost last: the size limit answers before anything else runs, then CORS, then the request metrics.
    app.add_middleware(RequestMetrics, metrics=metrics)
    if options.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(options.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodySizeLimit, max_body_bytes=options.max_body_bytes)
    return app
