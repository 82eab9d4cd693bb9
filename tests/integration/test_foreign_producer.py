"""A producer in another language writes Celery's message protocol v2 to Redis itself; nothing Python-specific."""

from __future__ import annotations

import base64
import json
import time
import uuid

from tests.integration.conftest import Fleet
from tests.support.providers import calls

KOMBU_SEP = "\x06\x16"


def foreign_message(task_id: str, kind: str, kwargs: dict[str, object], priority: int) -> str:
    """The exact JSON a non-Python client LPUSHes (as the README documents it)."""
    body = json.dumps([[], kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    return json.dumps(
        {
            "body": base64.b64encode(body.encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"lang": "js", "task": f"stepper.{kind}", "id": task_id, "root_id": task_id, "retries": 0},
            "properties": {
                "correlation_id": task_id,
                "delivery_mode": 2,
                "delivery_tag": str(uuid.uuid4()),
                "body_encoding": "base64",
                "delivery_info": {"exchange": "", "routing_key": kind},
                "priority": priority,
            },
        }
    )


def test_a_hand_written_protocol_v2_message_is_served(counting_fleet: Fleet) -> None:
    task_id = str(uuid.uuid4())
    before = calls(counting_fleet.redis, "counting")
    message = foreign_message(task_id, "chat", {"messages": [{"role": "user", "content": "from node"}]}, priority=5)
    counting_fleet.redis.lpush(f"chat{KOMBU_SEP}5", message)

    deadline = time.monotonic() + 30
    while (stored := counting_fleet.redis.get(f"celery-task-meta-{task_id}")) is None:
        assert time.monotonic() < deadline, "no result was stored"
        time.sleep(0.05)
    meta = json.loads(stored)
    assert meta["status"] == "SUCCESS"
    assert meta["result"]["output"]["message"]["content"].endswith("from node")
    assert calls(counting_fleet.redis, "counting") == before + 1
