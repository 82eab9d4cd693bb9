"""Connections that a vendor call's scope can cut from outside (see :mod:`stepper.infra.cancellation`).

``requests`` has no way to abort a call in progress, and a socket timeout only fires after a silence. So the
session's connection pools make connections that, as they send a request, attach themselves to the call in
progress (``current_call``); when the call is cancelled or misses a deadline, the enforcer shuts the socket
down and the thread blocked reading it gets an error at once. Swapping the pools' ``ConnectionCls`` is
urllib3's own extension point (``HTTPConnectionPool.ConnectionCls``, ``PoolManager.pool_classes_by_scheme``).
"""

from __future__ import annotations

import socket
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager

from stepper.infra.cancellation import current_call


def _shut_down(sock: socket.socket) -> None:
    """Shut the socket down in both directions; a read blocked on it returns now. The plain socket's method
    even for TLS: ``SSLSocket.shutdown`` would tear down the SSL object under the reader."""
    socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _attach(sock: object) -> None:
    """Give the call in progress a way to cut this socket. Taken once the request is sent: by the time the
    response is read, ``http.client`` may have handed the socket to the response (``Connection: close``)
    and cleared the connection's own reference."""
    call = current_call.get()
    if call is not None and isinstance(sock, socket.socket):
        call.attach(lambda: _shut_down(sock))


class CuttableHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)
        _attach(self.sock)


class CuttableHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)
        _attach(self.sock)


class CuttableHTTPPool(HTTPConnectionPool):
    ConnectionCls = CuttableHTTPConnection


class CuttableHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = CuttableHTTPSConnection


POOLS: dict[str, type[HTTPConnectionPool]] = {"http": CuttableHTTPPool, "https": CuttableHTTPSPool}


class CuttableAdapter(HTTPAdapter):
    """``requests``' adapter, with pools (direct and through HTTP proxies) of cuttable connections."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:
        manager: PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = POOLS
        return manager
