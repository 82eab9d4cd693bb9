"""Guards fail loudly, not open: a Redis the guards cannot use stops a real worker at start-up, naming why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import COUNTING_CHAINS, TEST_PROVIDERS
from tests.support.redis_server import RESERVED_DATABASES, RedisServer
from tests.support.workers import start_worker

USER, PASSWORD = "noscripts", "a-test-password-without-scripting"
SETTINGS = {"stepper_providers": TEST_PROVIDERS, "stepper_chains": COUNTING_CHAINS}


@pytest.fixture
def user_without_scripting(redis_server: RedisServer) -> Iterator[str]:
    """A Redis user allowed every command but scripting, as a locked-down managed Redis may hand out."""
    admin = redis_server.client()
    admin.acl_setuser(USER, enabled=True, passwords=[f"+{PASSWORD}"], keys=["*"], channels=["*"],
                      commands=["+@all", "-@scripting"])  # fmt: skip
    yield f"redis://{USER}:{PASSWORD}@127.0.0.1:{redis_server.port}/{RESERVED_DATABASES['acl']}"
    admin.acl_deluser(USER)


def test_a_redis_user_without_scripting_stops_the_worker_at_start_up(
    user_without_scripting: str, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError) as raised:
        start_worker(user_without_scripting, tmp_path / "worker", SETTINGS, name="noscript")
    report = str(raised.value)
    assert "exited (78)" in report  # EX_CONFIG: a supervisor shows a configuration error, not a crash
    assert "this worker cannot start" in report and "NoPermissionError" in report and "evalsha" in report
    assert "allowed to run scripts" in report  # says what to fix
    assert PASSWORD not in report


def test_the_same_user_with_scripting_starts(redis_server: RedisServer, tmp_path: Path) -> None:
    admin = redis_server.client()
    admin.acl_setuser("scripts", enabled=True, passwords=[f"+{PASSWORD}"], keys=["*"], channels=["*"],
                      commands=["+@all"])  # fmt: skip
    try:
        url = f"redis://scripts:{PASSWORD}@127.0.0.1:{redis_server.port}/{RESERVED_DATABASES['acl']}"
        worker = start_worker(url, tmp_path / "worker", SETTINGS, name="scripts")
        worker.stop()
    finally:
        admin.acl_deluser("scripts")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(url).ping()  # the user is gone again
