"""The broker misbehaves under a backlog: a clean Redis restart, a crash, every connection reset while it stays
up; on the threads and prefork pools. No task may be lost and no worker left idle while work waits (``make
chaos`` runs many more trials of the same scenarios and prints the figures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.binaries import require_binary
from tests.support.chaos import FAULTS, run

#: Faults that cut a connection mid-reply. Seen here: now and then one task of a backlog is lost (1 of 600 in
#: a trial): BRPOP removed the message from its list, and the reply carrying it never reached the worker, so
#: kombu never recorded it as unacknowledged. Not closed yet: README, "What can still be lost".
CUTS_A_REPLY = ("crash", "client-kill")


@pytest.mark.parametrize("pool", ["threads", "prefork"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_backlog_survives_broker_faults(fault: str, pool: str, tmp_path: Path) -> None:
    require_binary("redis-server", "redis-server")
    outcome = run(fault, pool, tasks=120, faults=2, directory=tmp_path)
    assert not outcome.stalled, outcome  # never a worker alive while work waits
    if outcome.lost and fault in CUTS_A_REPLY:
        pytest.xfail(f"{outcome.lost} message(s) lost in flight, the known window: {outcome}")
    assert outcome.lost == 0, outcome
    if fault != "client-kill":  # a reset mid-task puts its message back at once: that copy may run again
        assert outcome.duplicated == 0, outcome
