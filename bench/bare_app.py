"""Bare Celery, the baseline of the overhead and memory benchmarks: one task that returns its input.

``celery -A bench.bare_app worker`` with the broker (and result backend) in ``BENCH_BROKER_URL``. It runs on
the same serializer, acknowledgement and prefetch settings as stepper (``RELIABILITY``, checked against
stepper.config.CELERY_DEFAULTS by the overhead benchmark) and nothing else, and imports nothing of stepper, so what
stepper adds on top of Celery is the difference.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

BROKER_ENV = "BENCH_BROKER_URL"

#: Copied from stepper.config.CELERY_DEFAULTS, not imported: importing stepper would load it into the baseline.
RELIABILITY: dict[str, Any] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": ["json"],
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
}


def create_app(broker_url: str) -> Celery:
    bare = Celery("bare", broker=broker_url, backend=broker_url)
    bare.conf.update(RELIABILITY)

    # Not shared: each app made here (the worker's, a producer's) keeps its own.
    @bare.task(name="bare.echo", shared=False)  # type: ignore[untyped-decorator]  # Celery is untyped
    def echo(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    return bare


app = create_app(os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/0"))
