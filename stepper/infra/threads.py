"""The background threads a process starts on first need (stream flusher, journal forgetter, stream hub,
enforcer): one daemon thread each, started again if it died."""

from __future__ import annotations

import threading
from collections.abc import Callable


def running(thread: threading.Thread | None, target: Callable[[], None], name: str) -> threading.Thread:
    """``thread`` while it is alive, else a new daemon thread named ``name`` running ``target``, started.
    Call it with the owner's lock held, so that two callers never start two threads."""
    if thread is not None and thread.is_alive():
        return thread
    started = threading.Thread(target=target, name=name, daemon=True)
    started.start()
    return started
