"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from stepper.infra import artifacts
from stepper.infra.artifacts import LocalArtifactStore
from tests.support.binaries import require_binary
from tests.support.redis_server import RedisServer, free_port

# Everything in this test process (stepper's own app included) talks to the private server started below,
# never to a developer's Redis; the port is chosen before stepper reads its configuration.
REDIS_PORT = free_port()
os.environ["STEPPER_REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"
os.environ["CELERY_CONFIG_MODULE"] = "tests.support.no_deployment_config"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for the whole session."""
    binary = require_binary("redis-server", "redis-server")
    server = RedisServer(binary, Path(tmp_path_factory.mktemp("redis")), port=REDIS_PORT)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the private server, emptied before and after each test (decode_responses=False, as the
    guards need): what a test published must not reach the workers of the tests after it."""
    client = redis_server.client()
    client.flushall()
    yield client
    client.flushall()
    client.close()


@pytest.fixture
def artifact_dir(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Artifacts of this test go to a temporary directory, inline up to 16 KiB; call it to change the limit."""
    directory = tmp_path / "artifacts"

    def use(inline_max_bytes: int) -> Path:
        artifacts.set_artifact_store(LocalArtifactStore(directory, 3600, inline_max_bytes))
        return directory

    use(16 * 1024)
    yield use
    artifacts.set_artifact_store(None)
