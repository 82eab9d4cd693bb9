"""The broker misbehaves under a backlog: a clean Redis restart, a crash, every connection reset while it stays
up; on the threads and prefork pools. No task may be lost and no worker left idle while work waits (``make
chaos`` runs many more trials of the same scenarios and prints the figures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.binaries import require_binary
from tests.support.chaos import FAULTS, run

#: Seen here: now and then one task of a backlog is lost when redis-server is SIGKILLed under a prefork worker
#: (a message popped by BRPOP whose reply never reached the worker is suspected). Not closed yet: README,
#: "What can still be lost". Not strict: most trials lose nothing, and a pass is welcome.
LOSES_NOW_AND_THEN = pytest.mark.xfail(reason="a Redis crash can still lose a message in flight", strict=False)


@pytest.mark.parametrize("pool", ["threads", "prefork"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_backlog_survives_broker_faults(
    fault: str, pool: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    require_binary("redis-server", "redis-server")
    if (fault, pool) == ("crash", "prefork"):
        request.applymarker(LOSES_NOW_AND_THEN)
    outcome = run(fault, pool, tasks=120, faults=2, directory=tmp_path)
    assert not outcome.stalled, outcome
    assert outcome.lost == 0, outcome
    if fault != "client-kill":  # a reset mid-task puts its message back at once: that copy may run again
        assert outcome.duplicated == 0, outcome
