"""A worker's per-process set-up: what it makes before its first task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from stepper.celery import create_app
from stepper.schemas import KINDS
from stepper.workers.process import consumed_kinds
from tests.support.redis_server import RedisServer

#: A fresh interpreter warms a worker consuming the kinds given on its command line, and says which provider
#: modules and output versions were made before and after.
WARM = """
import json, sys
from stepper.reuse.cache import output_version
from stepper.workers import process
def made():
    return {"providers": sorted(m for m in sys.modules if m.startswith("stepper.providers.")),
            "versions": output_version.cache_info().currsize}
before = made()
process._consumed[:] = sys.argv[1:]
process._warm_up()
print(json.dumps({"before": before, "after": made()}))
"""


def test_a_worker_consumes_the_kinds_of_its_queues() -> None:
    app = create_app()
    assert consumed_kinds(app) == list(KINDS)  # no --queues: every queue
    app.amqp.queues.select(["chat", "report", "callbacks"])
    assert consumed_kinds(app) == ["report", "chat"]


def warmed(redis_server: RedisServer, *kinds: str) -> dict[str, dict[str, Any]]:
    environment = {**os.environ, "STEPPER_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/11"}
    done = subprocess.run(
        [sys.executable, "-c", WARM, *kinds], capture_output=True, text=True, env=environment, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, dict[str, Any]] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize(("kinds", "made", "not_made"), [
    (("chat", "report"), "stepper.providers.openai", "stepper.providers.tesseract"),
    (("ocr",), "stepper.providers.tesseract", "stepper.providers.openai"),
])  # fmt: skip
def test_the_first_task_finds_its_chains_providers_imported_and_its_output_version_made(
    redis_server: RedisServer, kinds: tuple[str, ...], made: str, not_made: str
) -> None:
    """The first tasks of a threads or gevent pool would each import them and digest the output schema at once."""
    result = warmed(redis_server, *kinds)
    assert made not in result["before"]["providers"]
    assert made in result["after"]["providers"]
    assert not_made not in result["after"]["providers"]  # another kind's providers stay unloaded
    assert result["before"]["versions"] == 0
    assert result["after"]["versions"] == len(kinds)
