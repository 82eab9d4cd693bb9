"""The broker misbehaves under a backlog: a clean restart, a crash, every connection reset while it stays up; on
Redis (threads and prefork pools) and RabbitMQ (threads: the pool does not change what the broker does). No
task may be lost and no worker left idle while work waits (``make chaos`` runs many more trials of the same
scenarios on both brokers and both pools, and prints the figures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.binaries import require_binary
from tests.support.chaos import FAULTS, run
from tests.support.rabbitmq_server import SERVER_SCRIPT

MATRIX = [
    *((fault, pool, "redis") for fault in sorted(FAULTS) for pool in ("threads", "prefork")),
    *((fault, "threads", "rabbitmq") for fault in sorted(FAULTS)),
]


@pytest.mark.parametrize(("fault", "pool", "broker"), MATRIX)
def test_a_backlog_survives_broker_faults(fault: str, pool: str, broker: str, tmp_path: Path) -> None:
    require_binary("redis-server", "redis-server")
    if broker == "rabbitmq":
        require_binary(SERVER_SCRIPT, "rabbitmq-server")
    # One fault per RabbitMQ trial: each restart of its node costs seconds of the suite's budget.
    outcome = run(fault, pool, tasks=120, faults=2 if broker == "redis" else 1, directory=tmp_path, broker=broker)
    assert not outcome.stalled, outcome  # never a worker alive while work waits
    assert outcome.lost == 0, outcome  # a message lost in flight is published again from the journal
    # A reset mid-task (client-kill, or RabbitMQ dropping the connection again just after a restart) puts the
    # running task's message back at once: its copy waits for the run still holding the idempotency key's claim.
    assert outcome.duplicated == 0, outcome
