"""The Celery app, found by ``celery -A stepper worker``.

Configuration is merged by :mod:`stepper.config` (package defaults, then ``celeryconfig``, then the
environment) and validated here, so a bad setting stops a worker at start-up with a message that names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery import Celery
from kombu import Queue

from stepper.config import current_config, parse_stepper_settings
from stepper.priorities import priority_value
from stepper.schemas import KINDS


class StepperCelery(Celery):  # type: ignore[misc]
    """Celery, with stepper's priority rules on every message it sends.

    Every path (``submit``, ``task.delay``, ``send_task`` by name, Celery's own retries) ends in ``send_task``,
    so this is the one place that accepts priority names and gives a message without a priority the
    ``normal`` level: kombu would otherwise file it under 0, the most urgent.
    """

    def send_task(self, name: str, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        options["priority"] = priority_value(options.get("priority"))
        return super().send_task(name, args, kwargs, **options)


def create_app(config: Mapping[str, Any] | None = None) -> StepperCelery:
    """A configured app; ``config`` defaults to this process's merged configuration."""
    config = dict(current_config() if config is None else config)
    parse_stepper_settings(config)
    app = StepperCelery("stepper", include=["stepper.tasks", "stepper.workers.process"])
    app.config_from_object(
        {
            **config,
            # One queue per family, named after it, and one for webhook deliveries; a worker started without
            # -Q consumes them all.
            "task_queues": [
                *(Queue(kind, routing_key=kind) for kind in KINDS),
                Queue("callbacks", routing_key="callbacks"),
            ],
            "task_routes": {
                **{f"stepper.{kind}": {"queue": kind} for kind in KINDS},
                "stepper.voices": {"queue": "speech"},
                "stepper.deliver_webhook": {"queue": "callbacks"},
            },
        }
    )
    # Puts messages stranded by a dead worker or a Redis restart back on their queues within a lease period.
    app.steps["worker"].add("stepper.workers.recovery:RecoveryStep")
    return app


app = create_app()
