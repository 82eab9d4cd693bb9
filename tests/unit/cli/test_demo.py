"""``stepper demo`` against a Redis with no worker: every kind times out, and nothing is left listening."""

from __future__ import annotations

import redis
from celery.result import EagerResult
from click.testing import CliRunner

from stepper.celery import app
from stepper.cli.demo import _stop_waiting, demo_command


def test_a_demo_whose_results_never_came_stops_listening_for_them(redis_client: redis.Redis) -> None:
    """Left to Celery's ``AsyncResult.__del__`` at exit, the unsubscriptions reconnect while the interpreter
    shuts down and print a traceback each (seen when a user pressed Ctrl-C while the demo waited)."""
    outcome = CliRunner().invoke(demo_command, ["--timeout", "0.3", "--no-guide"], standalone_mode=False)
    assert outcome.return_value == 1
    assert "0 of 6 kinds answered." in outcome.output
    assert "no result within 0.3s: is a worker consuming the 'chat' queue?" in outcome.output
    assert not app.backend.result_consumer.subscribed_to


def test_a_demo_answered_from_the_cache_has_nothing_to_stop_listening_for(redis_client: redis.Redis) -> None:
    """A second ``make run`` on the same Redis gets cached answers: ``EagerResult``s, which have no backend."""
    _stop_waiting([EagerResult("cached-task", {"cached": True}, "SUCCESS")])
