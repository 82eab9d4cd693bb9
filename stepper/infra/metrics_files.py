"""Keeping ``PROMETHEUS_MULTIPROC_DIR`` the size of the live fleet, not of its history.

In prometheus-client's multiprocess mode every process writes its own files (``counter_<pid>.db``,
``histogram_<pid>.db``), and a dead process's files must stay, or its counts would vanish from the totals.
A worker that recycles its pool processes (``--max-tasks-per-child``, memory limits) leaves two files per
dead child, and every scrape reads them all: after days, scrapes slow down and the directory fills. Here a
dead process's counters and histograms are added into one archive file per type and its files removed: the
totals are unchanged and the directory holds the live processes plus two archives. (Live gauges of a dead
process are removed by prometheus-client's own ``mark_process_dead``.)

A scrape reads the directory under the same lock (:class:`ConsistentCollector`), shared: prometheus-client's
collector lists the files, then reads them, and a merge in between removed a listed file (the scrape failed
with ``FileNotFoundError``) or archived one already read (counted twice).
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, mmap_dict
from prometheus_client.multiprocess import MultiProcessCollector

#: prometheus-client's own reader and writer of its files (untyped there).
MmapedDict: Any = mmap_dict.MmapedDict

#: The file types whose values add up across processes (histogram buckets are stored per bucket).
ADDITIVE = ("counter", "histogram")
_PER_PROCESS = re.compile(rf"^({'|'.join(ADDITIVE)})_(\d+)\.db$")
ARCHIVE_PID = "archive"


def merge_dead_processes(directory: str | Path) -> int:
    """Add the counter and histogram files of every dead process in ``directory`` into the archives and remove
    them; returns how many files were merged. Safe to call from several processes at once (a file lock)."""
    folder = Path(directory)
    merged = 0
    with _locked(folder):
        for path in sorted(folder.iterdir()):
            match = _PER_PROCESS.match(path.name)
            if match is None or _alive(int(match.group(2))):
                continue
            _add_into(folder / f"{match.group(1)}_{ARCHIVE_PID}.db", path)
            path.unlink()
            merged += 1
    return merged


class ConsistentCollector(MultiProcessCollector):
    """prometheus-client's collector of a multiprocess directory (``path``, else ``PROMETHEUS_MULTIPROC_DIR``),
    registered in ``registry``, reading it while no merge runs: a dead process is counted once, in its own files
    or in the archive."""

    def __init__(self, registry: CollectorRegistry | None, path: str | None = None) -> None:
        super().__init__(registry, path)  # type: ignore[no-untyped-call]  # prometheus-client is untyped here

    def collect(self) -> Any:
        with _locked(Path(self._path), fcntl.LOCK_SH):
            return super().collect()  # type: ignore[no-untyped-call]


def _add_into(archive_path: Path, path: Path) -> None:
    archive = MmapedDict(str(archive_path))
    try:
        for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(path)):
            total, _ = archive.read_value(key)
            archive.write_value(key, total + value, timestamp)
    finally:
        archive.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process, alive
        return True
    return True


@contextmanager
def _locked(folder: Path, mode: int = fcntl.LOCK_EX) -> Iterator[None]:
    """The directory's lock: exclusive for a merge, shared (``fcntl.LOCK_SH``) for a scrape."""
    with (folder / ".stepper-merge.lock").open("a") as lock:
        fcntl.flock(lock, mode)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
