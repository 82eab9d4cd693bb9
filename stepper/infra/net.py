"""Fetching a caller's URL without letting the caller reach our private network (SSRF).

The check runs on the address a socket actually connected to, after DNS, for every connection including
each redirect hop, so neither DNS rebinding (a name that resolves differently the second time) nor a
redirect to an internal host gets a request through. Nothing is sent before the peer address is checked.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable
from functools import cache
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class BlockedAddress(Exception):
    """A connection reached an address that is not contacted on a caller's behalf; the message says which."""


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Cloud metadata endpoints, named for clearer errors (they are link-local or private anyway).
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


def blocked_reason(address: str, allowed: Iterable[Network] = ()) -> str | None:
    """Why a peer address may not be contacted on a caller's behalf, or None if it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in allowed):
        return None
    if ip in METADATA:
        return "a cloud metadata address"
    for label, flag in (
        ("a loopback", ip.is_loopback),
        ("an unspecified", ip.is_unspecified),
        ("a link-local", ip.is_link_local),
        ("a multicast", ip.is_multicast),
        ("a reserved", ip.is_reserved),
        ("a private", ip.is_private),
    ):
        if flag:
            return f"{label} address"
    return None


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def _checked(sock: socket.socket, host: str, allowed: tuple[Network, ...]) -> socket.socket:
    peer = sock.getpeername()[0]
    reason = blocked_reason(peer, allowed)
    if reason is not None:
        sock.close()
        raise BlockedAddress(f"URL host {host!r} resolves to {peer}, {reason}; only public addresses are fetched")
    return sock


def guarded_session(allowed: tuple[Network, ...]) -> requests.Session:
    """A session whose every connection is checked against ``allowed`` and the blocked ranges."""

    class GuardedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _checked(super()._new_conn(), self.host, allowed)

    class GuardedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return _checked(super()._new_conn(), self.host, allowed)

    class GuardedHTTPPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    class GuardedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}
            self.poolmanager.key_fn_by_scheme = dict(self.poolmanager.key_fn_by_scheme)

    session = requests.Session()
    session.trust_env = False  # an environment proxy would make the peer check meaningless
    for scheme in ("http://", "https://"):
        session.mount(scheme, GuardedAdapter(max_retries=0))
    return session


@cache
def _process_session(allowed: tuple[Network, ...], pid: int) -> requests.Session:
    del pid  # part of the cache key: a forked child makes its own
    return guarded_session(allowed)


def process_session(allowed: tuple[Network, ...]) -> requests.Session:
    """This process's guarded session for ``allowed`` (image downloads and webhook deliveries share it)."""
    return _process_session(allowed, os.getpid())
