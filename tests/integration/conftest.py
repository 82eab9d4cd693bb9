"""Integration fixtures: real workers on the private Redis, one Redis database per fleet so fleets never
take each other's messages."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from stepper.celery import create_app
from stepper.config import load_config
from stepper.gateway.auth import key_digest
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.redis_server import RESERVED_DATABASES, RedisServer
from tests.support.workers import Worker, start_worker

pytestmark = pytest.mark.integration

TEST_PROVIDERS = {
    "counting": {"class": "tests.support.providers:CountingProvider"},
    "failing": {"class": "tests.support.providers:FailingChat"},
    "slow": {"class": "tests.support.providers:SlowChat", "options": {"delay_s": 0.3}},
}
COUNTING_CHAINS = {kind: ["counting:test-model"] for kind in ("report", "chat", "ocr", "steps", "vision", "speech")}

_databases = itertools.count(1)


@dataclass
class Fleet:
    """A worker and a producer app sharing one Redis database."""

    url: str
    app: Celery
    worker: Worker
    redis: redis.Redis


def producer_app(url: str) -> Celery:
    return create_app(load_config({"STEPPER_REDIS_URL": url, "CELERY_CONFIG_MODULE": "stepper_tests_absent"}))


@pytest.fixture(scope="session")
def start_fleet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Fleet]]:
    """Start a fleet: ``start_fleet(settings, **worker_options)``; every fleet is stopped at the end."""
    fleets: list[Fleet] = []

    def start(settings: dict[str, Any], *, database: int | None = None, **options: Any) -> Fleet:
        number = next(_databases) if database is None else database
        assert database is not None or number < min(RESERVED_DATABASES.values()), "more test fleets than databases"
        url = f"redis://127.0.0.1:{redis_server.port}/{number}"
        directory = Path(tmp_path_factory.mktemp("worker"))
        providers = {**TEST_PROVIDERS, **settings.get("stepper_providers", {})}
        worker = start_worker(url, directory, {**settings, "stepper_providers": providers}, **options)
        fleet = Fleet(url, producer_app(url), worker, redis.Redis.from_url(url))
        fleets.append(fleet)
        return fleet

    yield start
    for fleet in fleets:
        fleet.worker.stop()


@pytest.fixture(scope="session")
def counting_fleet(start_fleet: Callable[..., Fleet]) -> Fleet:
    """A fleet whose every chain is the counting provider, on database 0 (where stepper.submit sends)."""
    return start_fleet({"stepper_chains": COUNTING_CHAINS}, database=0, name="counting")


#: The gateway's tests: a mock-mode fleet and one gateway in front of it, shared by the gateway's test modules.
GATEWAY_KEY = "stp_integration-key-4c1d9e7a0b2f"  # a test key; its digest is what the gateway is configured with
MOCK_SETTINGS: dict[str, Any] = {"stepper_mode": "mock"}


@pytest.fixture(scope="session")
def gateway_fleet(start_fleet: Callable[..., Fleet]) -> Fleet:
    return start_fleet(MOCK_SETTINGS, name="gateway")


@pytest.fixture(scope="session")
def gateway(gateway_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    settings = {
        **MOCK_SETTINGS,
        "stepper_gateway": {
            "key_hashes": [key_digest(GATEWAY_KEY)],
            "rpm": 100_000,
            "tpm": 100_000_000,
            "max_body_bytes": 64 * 1024,
        },
    }
    with running_gateway(gateway_fleet.url, Path(tmp_path_factory.mktemp("gateway")), settings) as running:
        yield running
