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
from stepper.schemas import KINDS


def create_app(config: Mapping[str, Any] | None = None) -> Celery:
    """A configured app; ``config`` defaults to this process's merged configuration."""
    config = dict(current_config() if config is None else config)
    parse_stepper_settings(config)
    app = Celery("stepper", include=["stepper.tasks", "stepper.workers.process"])
    app.config_from_object(
        {
            **config,
            # One queue per family, named after it; a worker started without -Q consumes all six.
            "task_queues": [Queue(kind) for kind in KINDS],
            "task_routes": {f"stepper.{kind}": {"queue": kind} for kind in KINDS},
        }
    )
    return app


app = create_app()
