"""The broker misbehaves under a backlog: a clean Redis restart, a crash, every connection reset while it stays
up; on the threads and prefork pools. No task may be lost and no worker left idle while work waits (``make
chaos`` runs many more trials of the same scenarios and prints the figures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.binaries import require_binary
from tests.support.chaos import FAULTS, run


@pytest.mark.parametrize("pool", ["threads", "prefork"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_backlog_survives_broker_faults(fault: str, pool: str, tmp_path: Path) -> None:
    require_binary("redis-server", "redis-server")
    outcome = run(fault, pool, tasks=120, faults=2, directory=tmp_path)
    assert not outcome.stalled, outcome  # never a worker alive while work waits
    assert outcome.lost == 0, outcome  # a message lost in flight is published again from the journal
    if fault != "client-kill":  # a reset mid-task puts its message back at once: that copy may run again
        assert outcome.duplicated == 0, outcome
