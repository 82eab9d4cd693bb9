"""Every guard test runs on both backends: in memory and on the private Redis."""

from __future__ import annotations

import pytest
import redis

from tests.unit.guards.harness import Harness, memory_harness, redis_harness


@pytest.fixture(params=["memory", "redis"])
def harness(request: pytest.FixtureRequest) -> Harness:
    if request.param == "memory":
        return memory_harness()
    client: redis.Redis = request.getfixturevalue("redis_client")
    return redis_harness(client)
