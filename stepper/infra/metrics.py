"""Prometheus metrics, recorded in process from stepper's own code paths (not from Celery's task events).

Labels are kinds, providers and outcomes: never task ids, prompts or secrets. Under the prefork pool every
child process writes to ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode) and the
worker's main process serves the aggregate; set ``STEPPER_METRICS_PORT`` to serve ``/metrics`` from each
worker, or run ``stepper metrics`` beside the workers. Fleet-wide figures that live in Redis (queue depth by
priority, breaker state, dead letters, workers up) are read at scrape time by :mod:`stepper.ops.exporter`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from stepper.infra import metrics_files

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

TASKS = Counter("stepper_tasks_total", "Tasks finished, by kind and outcome", ["kind", "outcome"])
TASK_SECONDS = Histogram("stepper_task_seconds", "Task duration", ["kind"], buckets=LATENCY_BUCKETS)
ATTEMPTS = Counter("stepper_provider_attempts_total", "Provider attempts", ["kind", "provider", "outcome"])
ATTEMPT_SECONDS = Histogram(
    "stepper_provider_call_seconds", "Provider call duration", ["kind", "provider"], buckets=LATENCY_BUCKETS
)
FALLBACKS = Counter("stepper_fallbacks_total", "Results served by a provider other than the chain's first", ["kind"])
CACHE = Counter("stepper_cache_total", "Cache lookups", ["kind", "result"])
TOKENS = Counter("stepper_tokens_total", "Tokens used, as the vendors report them", ["provider", "direction"])
RATE_LIMIT_WAITS = Counter("stepper_rate_limit_waits_total", "Waits for a fleet-wide rate limit", ["provider"])
RATE_LIMIT_WAIT_SECONDS = Counter(
    "stepper_rate_limit_wait_seconds_total", "Seconds waited for rate limits", ["provider"]
)
GUARD_FAIL_OPEN = Counter(
    "stepper_guard_fail_open_total",
    "Provider calls let through unguarded because the guards' Redis was unreachable",
    ["provider"],
)
DEPLOYMENT_ATTEMPTS = Counter(
    "stepper_deployment_attempts_total",
    "Attempts on each deployment of providers that declare several (by label, never URL or key)",
    ["kind", "provider", "deployment", "outcome"],
)
SPEND = Counter(
    "stepper_spend_total",
    "Money spent at the configured prices, by provider, model and gateway key (its identity; '' outside the "
    "gateway), in the prices' currency",
    ["provider", "model", "gateway_key", "currency"],
)
BREAKER_TRANSITIONS = Counter(
    "stepper_breaker_transitions_total", "Circuit breaker state changes seen by this process", ["provider", "state"]
)


def record_attempt(kind: str, provider: str, outcome: str, ms: float, deployment: str | None = None) -> None:
    ATTEMPTS.labels(kind, provider, outcome).inc()
    if deployment is not None:
        DEPLOYMENT_ATTEMPTS.labels(kind, provider, deployment, outcome).inc()
    if outcome != "skipped":
        ATTEMPT_SECONDS.labels(kind, provider).observe(ms / 1000)


def record_reply(kind: str, provider: str, first_tried: str | None, usage: Mapping[str, object]) -> None:
    """A fallback is an answer from any provider but the first the chain tried (``first_tried``)."""
    if first_tried is not None and first_tried != provider:
        FALLBACKS.labels(kind).inc()
    for direction in ("input", "output"):
        if isinstance(tokens := usage.get(f"{direction}_tokens"), int) and tokens:
            TOKENS.labels(provider, direction).inc(tokens)


def record_spend(provider: str, model: str, gateway_key: str | None, cost: float, currency: str) -> None:
    if cost > 0:
        SPEND.labels(provider, model, gateway_key or "", currency).inc(cost)


def record_task(kind: str, outcome: str, seconds: float) -> None:
    TASKS.labels(kind, outcome).inc()
    TASK_SECONDS.labels(kind).observe(seconds)


def process_registry() -> CollectorRegistry:
    """This process's metrics, or every process's under prefork (multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        metrics_files.ConsistentCollector(registry)
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY


def serve(port: int, registry: CollectorRegistry) -> None:
    start_http_server(port, registry=registry)
