"""A task whose Redis bookkeeping cannot reach Redis goes back on its queue instead of failing."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from celery.exceptions import Reject

from stepper import tasks
from stepper.outcomes import listeners as outcomes
from stepper.tasks import base


def test_redis_down_longer_than_the_wait_requeues_the_task(monkeypatch: pytest.MonkeyPatch) -> None:
    def redis_is_down(*_: Any, **__: Any) -> dict[str, Any]:
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    failures: list[Any] = []
    monkeypatch.setattr(base, "serve", redis_is_down)
    monkeypatch.setattr(outcomes, "failed", lambda *args: failures.append(args))

    with pytest.raises(Reject) as rejected:
        tasks.chat(messages=[{"role": "user", "content": "hello"}])

    assert rejected.value.requeue is True
    assert failures == []  # not a failure: no dead letter, no failure webhook
