"""Every command a Redis server runs while a block runs, as its ``MONITOR`` reports them (scripts' own commands
too, marked ``lua``)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis


@contextmanager
def monitored(server: redis.Redis) -> Iterator[list[dict[str, Any]]]:
    """The commands ``server`` runs during the block, each as redis-py's ``Monitor.listen`` gives it: ``db``,
    ``client_type`` (``lua`` for a script's), ``command`` (the whole line). When the block ends the list holds every
    command Redis ran until then."""
    seen: list[dict[str, Any]] = []
    listening = threading.Event()
    end = f"monitored-block-ends-{uuid.uuid4().hex}"

    def listen() -> None:
        with server.monitor() as monitor:  # type: ignore[no-untyped-call]  # redis-py leaves monitor() untyped
            listening.set()
            for command in monitor.listen():
                if end in command["command"]:
                    return
                seen.append(command)

    thread = threading.Thread(target=listen, name="redis-monitor", daemon=True)
    thread.start()
    listening.wait(timeout=10)
    try:
        yield seen
    finally:
        # MONITOR reports commands in the order Redis ran them, and the listener may still be reading those of the
        # block: it stops at this marker, not when the block ends, so none of them is dropped.
        server.echo(end)
        thread.join(timeout=10)
