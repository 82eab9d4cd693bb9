"""Prometheus metrics, recorded in process from stepper's own code paths (not from Celery's task events).

Labels are kinds, providers and outcomes: never task ids, prompts or secrets. Under the prefork pool every
child process writes to ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode) and the
worker's main process serves the aggregate; set ``STEPPER_METRICS_PORT`` to serve ``/metrics`` from each
worker, or run ``stepper metrics`` beside the workers. Fleet-wide figures that live in Redis (queue depth by
priority, breaker state, dead letters, workers up) are read at scrape time by :class:`FleetCollector`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from stepper.schemas import Attempt

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
BREAKER_TRANSITIONS = Counter(
    "stepper_breaker_transitions_total", "Circuit breaker state changes seen by this process", ["provider", "state"]
)

BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}


def record_attempt(kind: str, attempt: Attempt) -> None:
    ATTEMPTS.labels(kind, attempt.provider, attempt.outcome).inc()
    if attempt.outcome != "skipped":
        ATTEMPT_SECONDS.labels(kind, attempt.provider).observe(attempt.ms / 1000)


def record_reply(kind: str, provider: str, attempts: list[Attempt], usage: dict[str, int]) -> None:
    """A fallback is an answer from any provider but the first the chain tried."""
    if attempts and attempts[0].provider != provider:
        FALLBACKS.labels(kind).inc()
    for direction in ("input", "output"):
        if tokens := usage.get(f"{direction}_tokens"):
            TOKENS.labels(provider, direction).inc(tokens)


def record_task(kind: str, outcome: str, seconds: float) -> None:
    TASKS.labels(kind, outcome).inc()
    TASK_SECONDS.labels(kind).observe(seconds)


class FleetCollector(Collector):
    """Reads the fleet's shared state from Redis at scrape time (one exporter per fleet is enough)."""

    def __init__(self, app: Any, client: Any) -> None:
        self.app = app
        self.client = client

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from stepper.fleetstate import read_fleet

        state = read_fleet(self.app, self.client, [queue.name for queue in self.app.conf.task_queues], timeout_s=0.5)
        up = GaugeMetricFamily("stepper_redis_up", "Whether the broker's Redis answers")
        up.add_metric([], 1.0 if state.redis_ok else 0.0)
        yield up
        depth = GaugeMetricFamily("stepper_queue_depth", "Messages waiting", labels=["queue", "priority"])
        for queue, levels in state.queues.items():
            for level, count in levels.items():
                depth.add_metric([queue, str(level)], count)
        yield depth
        workers = GaugeMetricFamily("stepper_workers_up", "Workers answering, by queue", labels=["queue"])
        for queue in state.queues:
            workers.add_metric([queue], sum(queue in worker.queues for worker in state.workers))
        yield workers
        breakers = GaugeMetricFamily("stepper_breaker_state", "0 closed, 1 half-open, 2 open", labels=["provider"])
        for provider, breaker in state.breakers.items():
            breakers.add_metric([provider], BREAKER_STATES.get(breaker, 2))
        yield breakers
        dead = GaugeMetricFamily("stepper_dead_letters", "Entries in the dead-letter store")
        dead.add_metric([], state.dead_letters)
        yield dead


def process_registry() -> CollectorRegistry:
    """This process's metrics, or every process's under prefork (multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY


def serve(port: int, registry: CollectorRegistry) -> None:
    start_http_server(port, registry=registry)
