"""The gateway's own Prometheus metrics, and ``/metrics``: them plus the fleet's state read from Redis.

Labels are the route template (``/api/v1/tasks/{task_id}``, never an id), the method, the status, and for
refusals the key's short identity: never a key, a prompt or a task id.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stepper.infra.metrics import LATENCY_BUCKETS
from stepper.ops.exporter import FleetCollector
from stepper.settings import StepperSettings


class GatewayMetrics:
    """One registry per gateway app, so that several apps in one process (tests) never share counters."""

    def __init__(self, celery: Any = None, redis: Any = None, settings: StepperSettings | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "stepper_gateway_requests_total",
            "HTTP requests answered by the gateway",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "stepper_gateway_request_seconds",
            "Time to the end of the answer (streams included)",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.refused = Counter(
            "stepper_gateway_refused_total",
            "Requests refused for a key, by reason (unauthorised, rate_limited, budget_exhausted)",
            ["key", "reason"],
            registry=self.registry,
        )
        self.client_disconnects = Counter(
            "stepper_gateway_client_disconnects_total",
            "Clients that hung up before their answer ended; the task they were waiting for is cancelled",
            ["route"],
            registry=self.registry,
        )
        if celery is not None and redis is not None:
            self.registry.register(FleetCollector(celery, redis, settings))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def route_label(scope: Scope) -> str:
    """The route template a request matched (``/api/v1/tasks/{task_id}``), or ``unmatched``."""
    return str(getattr(scope.get("route"), "path", None) or "unmatched")


class RequestMetrics:
    """Pure ASGI middleware: counts every answer and times it to its last byte."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = route_label(scope)
            method = str(scope.get("method", "?"))
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.seconds.labels(route, method).observe(time.perf_counter() - started)
