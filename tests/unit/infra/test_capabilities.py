"""Optional parameters a provider refused, remembered fleet-wide with a TTL, read through a local copy."""

from __future__ import annotations

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stepper.infra import capabilities as module
from stepper.infra import keys
from stepper.infra.capabilities import MemoryCapabilities, RedisCapabilities


@pytest.fixture(params=["memory", "redis"])
def memory(request: pytest.FixtureRequest, redis_client: Redis) -> MemoryCapabilities | RedisCapabilities:
    return MemoryCapabilities() if request.param == "memory" else RedisCapabilities(redis_client, ttl_s=3600)


def test_a_refusal_is_remembered_per_provider_and_model(memory: MemoryCapabilities | RedisCapabilities) -> None:
    assert memory.refused("vllm", "m") == frozenset()
    memory.remember("vllm", "m", "stream_options")
    memory.remember("vllm", "m", "temperature")
    assert memory.refused("vllm", "m") == {"stream_options", "temperature"}
    assert memory.refused("vllm", "other") == frozenset()
    assert memory.refused("tgi", "m") == frozenset()


def test_another_worker_learns_it_and_it_expires(redis_client: Redis) -> None:
    RedisCapabilities(redis_client, ttl_s=600).remember("vllm", "m", "stream_options")
    assert RedisCapabilities(redis_client, ttl_s=600).refused("vllm", "m") == {"stream_options"}
    assert 0 < redis_client.pttl(keys.refused_parameters("vllm", "m")) <= 600_000


def test_what_a_process_read_serves_it_for_a_while_without_redis(
    redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = RedisCapabilities(redis_client, ttl_s=600)
    assert reader.refused("vllm", "m") == frozenset()
    RedisCapabilities(redis_client, ttl_s=600).remember("vllm", "m", "stream_options")
    assert reader.refused("vllm", "m") == frozenset()  # its copy is still fresh: no round trip per call
    monkeypatch.setattr(module, "LOCAL_TTL_S", 0.0)
    assert reader.refused("vllm", "m") == {"stream_options"}
    unreachable = Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    broken = RedisCapabilities(unreachable, ttl_s=600)
    broken.remember("vllm", "m", "temperature")  # logged, kept locally
    assert broken.refused("vllm", "m") == {"temperature"}
