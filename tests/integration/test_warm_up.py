"""A worker loads what its first tasks need before they come, except a prefork parent, which runs no task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import Fleet
from tests.support.waiting import wait_until

#: The OCR chain's engine (the default chain: tesseract, through tesserocr), as a loaded shared library.
ENGINE = "tesserocr"


def loaded(pid: int) -> bool:
    return ENGINE in Path(f"/proc/{pid}/maps").read_text()


def test_a_threads_worker_loads_its_chains_engines_before_its_first_task(start_fleet: Callable[..., Fleet]) -> None:
    fleet = start_fleet({}, name="warm-threads", queues=["ocr"])
    assert loaded(fleet.worker.process.pid)


def test_a_worker_consuming_other_queues_does_not_load_them(start_fleet: Callable[..., Fleet]) -> None:
    fleet = start_fleet({}, name="warm-chat", queues=["chat"])
    assert not loaded(fleet.worker.process.pid)


def test_prefork_children_load_them_as_they_start_and_the_parent_never(start_fleet: Callable[..., Fleet]) -> None:
    """The parent forks a child again whenever one is replaced: it must not hold the engines' threads."""
    fleet = start_fleet({}, name="warm-prefork", queues=["ocr"], pool="prefork", concurrency=1)
    (child,) = fleet.worker.pool_children()
    wait_until(lambda: loaded(child), "the pool child to load tesserocr")
    assert not loaded(fleet.worker.process.pid)
