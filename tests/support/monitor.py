"""Every command a Redis server runs while a block runs, as its ``MONITOR`` reports them (scripts' own commands
too, marked ``lua``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis


@contextmanager
def monitored(server: redis.Redis) -> Iterator[list[dict[str, Any]]]:
    """The commands ``server`` runs during the block, each as redis-py's ``Monitor.listen`` gives it: ``db``,
    ``client_type`` (``lua`` for a script's), ``command`` (the whole line). The list fills until the block ends."""
    seen: list[dict[str, Any]] = []
    listening = threading.Event()
    stop = threading.Event()

    def listen() -> None:
        with server.monitor() as monitor:  # type: ignore[no-untyped-call]  # redis-py leaves monitor() untyped
            listening.set()
            for command in monitor.listen():
                if stop.is_set():
                    return
                seen.append(command)

    thread = threading.Thread(target=listen, name="redis-monitor", daemon=True)
    thread.start()
    listening.wait(timeout=10)
    try:
        yield seen
    finally:
        stop.set()
        server.ping()  # wakes the listener up
        thread.join(timeout=10)
