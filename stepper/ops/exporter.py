"""The Prometheus exporter of the fleet: this host's workers' counters, and the fleet's state read from Redis
at scrape time (``stepper metrics``; one exporter per fleet is enough)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stepper.ops.fleet import read_fleet
from stepper.settings import StepperSettings

BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}


class FleetCollector(Collector):
    """Reads the fleet's shared state from Redis at scrape time (one exporter per fleet is enough)."""

    def __init__(self, app: Any, client: Any, settings: StepperSettings | None = None) -> None:
        """``settings``: the fleet's, whose budgets are served as gauges (none without them)."""
        self.app = app
        self.client = client
        self.settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queues = [queue.name for queue in self.app.conf.task_queues]
        state = read_fleet(self.app, self.client, queues, timeout_s=0.5, settings=self.settings)
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
        budget_labels = ["scope", "name", "window", "currency"]
        spent = GaugeMetricFamily(
            "stepper_budget_spent", "Spent in the budget's current UTC window", labels=budget_labels
        )
        limit = GaugeMetricFamily("stepper_budget_limit", "What the budget allows per window", labels=budget_labels)
        for use in state.spend:
            labels = [use.scope, use.name, use.window, use.currency]
            spent.add_metric(labels, use.spent)
            limit.add_metric(labels, use.limit)
        yield spent
        yield limit
