"""Integration fixtures: real workers on the private Redis, one Redis database per fleet so fleets never
take each other's messages. A fleet on RabbitMQ (``broker="rabbitmq"``, ``"rabbitmq-quorum"``) has its messages
on a vhost of the private RabbitMQ node (started on first use) and its results and state on its Redis database."""

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
from tests.support.binaries import require_binary
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.rabbitmq_server import SERVER_SCRIPT, VHOSTS, RabbitMQServer
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


#: The brokers the broker matrix runs on: Redis, and RabbitMQ with classic (priority) and quorum queues.
BROKERS = ("redis", "rabbitmq")
_vhosts = itertools.count(1)


@dataclass
class Fleet:
    """A worker and a producer app sharing one Redis database (results, state) and one broker."""

    url: str
    app: Celery
    worker: Worker
    redis: redis.Redis
    broker_url: str = ""


def producer_app(url: str, broker_url: str | None = None, settings: dict[str, Any] | None = None) -> Celery:
    environ = {"STEPPER_REDIS_URL": url, "CELERY_CONFIG_MODULE": "stepper_tests_absent"}
    if broker_url:
        environ["STEPPER_BROKER_URL"] = broker_url
    return create_app({**load_config(environ), **(settings or {})})


@pytest.fixture(scope="session")
def rabbitmq_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQServer]:
    """A private RabbitMQ node for the whole session, started by the first test that needs it."""
    require_binary(SERVER_SCRIPT, "rabbitmq-server")
    server = RabbitMQServer(Path(tmp_path_factory.mktemp("rabbitmq")))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def start_fleet(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Fleet]]:
    """Start a fleet: ``start_fleet(settings, broker="redis", **worker_options)``; every fleet is stopped at the
    end. ``broker``: "redis", or "rabbitmq" / "rabbitmq-quorum" (a vhost of its own, classic or quorum queues)."""
    fleets: list[Fleet] = []

    def start(settings: dict[str, Any], *, database: int | None = None, broker: str = "redis", **options: Any) -> Fleet:
        number = next(_databases) if database is None else database
        assert database is not None or number < min(RESERVED_DATABASES.values()), "more test fleets than databases"
        url = f"redis://127.0.0.1:{redis_server.port}/{number}"
        directory = Path(tmp_path_factory.mktemp("worker"))
        providers = {**TEST_PROVIDERS, **settings.get("stepper_providers", {})}
        settings = {**settings, "stepper_providers": providers}
        broker_url = url
        if broker.startswith("rabbitmq"):
            vhost = next(_vhosts)
            assert vhost < VHOSTS, "more RabbitMQ test fleets than vhosts"
            broker_url = request.getfixturevalue("rabbitmq_server").url(vhost)
            queue_type = "quorum" if broker == "rabbitmq-quorum" else "classic"
            settings["stepper_rabbitmq"] = {**settings.get("stepper_rabbitmq", {}), "queue_type": queue_type}
            options["env"] = {**options.get("env", {}), "STEPPER_BROKER_URL": broker_url}
        worker = start_worker(url, directory, settings, **options)
        app = producer_app(url, broker_url, {"stepper_rabbitmq": settings.get("stepper_rabbitmq", {})})
        fleet = Fleet(url, app, worker, redis.Redis.from_url(url), broker_url)
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
