"""One broker connection a housekeeping duty keeps between its ticks, dropped (and made again) when it fails."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


class HeldConnection:
    """``app``'s broker connection for one duty: made on first use, released after any failure of the duty."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._connection: Any = None

    def channel(self) -> Any:
        """The connection's default channel (connecting first when needed)."""
        if self._connection is None:
            self._connection = self.app.connection_for_write()
        return self._connection.default_channel

    def reset(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # a broken connection may fail to close; it is dropped either way
                logger.debug("closing a housekeeping connection failed", exc_info=True)
            self._connection = None
