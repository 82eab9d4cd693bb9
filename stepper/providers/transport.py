"""The connections vendor calls travel on: urllib3 pools of connections a call's scope can cut from outside.

Providers call vendors through urllib3 directly rather than a ``requests`` session: one call cost 470 µs of
CPU through a session and 190 µs through urllib3 on the same loopback vendor (``make bench`` puts CPU per
call beside a bare Celery worker using ``requests``). What ``requests`` added that providers need is kept:
the environment's proxy (honouring ``NO_PROXY``), CA bundle and netrc credentials, read once per provider by
:func:`environment_settings`; JSON bodies; the body read as text or JSON; lines of a streamed body.

A socket timeout only fires after a silence, so the pools make connections that, as they send a request,
attach themselves to the call in progress (``current_call``); when the call is cancelled or misses a
deadline, the enforcer shuts the socket down and the thread blocked reading it gets an error at once.
Swapping the pools' ``ConnectionCls`` is urllib3's own extension point (``HTTPConnectionPool.ConnectionCls``,
``PoolManager.pool_classes_by_scheme``).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from email.message import Message
from functools import cache, lru_cache
from typing import Any

import certifi
from requests.utils import get_auth_from_url, get_environ_proxies, get_netrc_auth, select_proxy
from urllib3 import BaseHTTPResponse, PoolManager, ProxyManager, Timeout
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError
from urllib3.util import Url, make_headers, parse_url

from stepper import __version__
from stepper.infra.cancellation import current_call

#: Connections kept per host in each process; raised to the worker's concurrency at start-up.
_pool_size = 10
#: What every vendor call says of itself, as ``requests`` did (``Accept-Encoding``: urllib3 decodes gzip).
DEFAULT_HEADERS = {"User-Agent": f"stepper/{__version__}", "Accept": "*/*", "Accept-Encoding": "gzip, deflate"}
#: Bytes read at a time from a streamed body (``requests``' ``iter_lines`` reads 512 too): a chunked answer
#: yields each chunk as it arrives.
STREAM_CHUNK_BYTES = 512
#: A streamed answer's reader stops at the event that ends the answer (OpenAI's ``[DONE]``, Anthropic's
#: ``message_stop``...), before the chunked body's terminating chunk, which the server sends right after it.
#: Closing then would close the connection, and the next call to the vendor would open another one: a TCP
#: and TLS handshake on the way to every streamed first token. So the rest of the body is read first, at
#: most this many bytes...
DRAIN_BYTES = 64 * 1024
#: ... and for at most this long in all. A body that goes on (an answer abandoned midway) or does not end in
#: time costs no more than that, and its connection is closed, as before.
DRAIN_WAIT_S = 0.01


def configure_pool(size: int) -> None:
    """Size the per-process connection pools (called with the worker's concurrency before any request)."""
    global _pool_size  # noqa: PLW0603  (one setting per process, set once at worker start-up)
    _pool_size = max(1, size)


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


@dataclass(frozen=True)
class EnvironmentSettings:
    """What ``requests`` would take from the environment for one base URL: the proxy to go through (``None``:
    direct), the CA bundle (a file or a directory) and netrc credentials."""

    proxy: str | None
    ca_bundle: str
    auth: tuple[str, str] | None


def environment_settings(url: str) -> EnvironmentSettings:
    """Proxies (honouring NO_PROXY), REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE (else certifi's bundle, as
    ``requests``), and netrc credentials for ``url``, exactly as ``requests`` finds them when it trusts the
    environment."""
    proxy = select_proxy(url, get_environ_proxies(url))
    ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    return EnvironmentSettings(proxy, ca_bundle, get_netrc_auth(url))


def pools_for(environment: EnvironmentSettings) -> PoolManager:
    """This process's pools for calls made with ``environment``'s proxy and CA bundle."""
    return _pools(os.getpid(), _pool_size, environment.proxy, environment.ca_bundle)


@cache
def _pools(pid: int, size: int, proxy: str | None, ca_bundle: str) -> PoolManager:
    del pid  # part of the cache key: a forked child makes its own pools
    trust = {"ca_cert_dir": ca_bundle} if os.path.isdir(ca_bundle) else {"ca_certs": ca_bundle}
    options: dict[str, Any] = {"num_pools": 32, "maxsize": size, "block": False, "cert_reqs": "CERT_REQUIRED", **trust}
    manager: PoolManager
    if proxy is None:
        manager = PoolManager(**options)
    else:
        username, password = get_auth_from_url(proxy)
        headers = make_headers(proxy_basic_auth=f"{username}:{password}") if username else None
        manager = ProxyManager(proxy, proxy_headers=headers, **options)
    manager.pool_classes_by_scheme = POOLS
    return manager


def send(
    environment: EnvironmentSettings,
    method: str,
    url: str,
    *,
    body: bytes | None,
    headers: Mapping[str, str],
    timeout: Timeout,
) -> Answer:
    """Send one request and return once its status and headers arrived, the body unread. No retries and no
    redirects: a redirect comes back as the answer it is. Raises urllib3's exceptions (``ConnectTimeoutError``,
    ``NewConnectionError``, ``ReadTimeoutError``, ``ProtocolError``...) for the caller to map."""
    outgoing = {**DEFAULT_HEADERS, **headers}
    if environment.auth is not None and not any(name.lower() == "authorization" for name in outgoing):
        outgoing.update(make_headers(basic_auth=":".join(environment.auth)))
    options: dict[str, Any] = {"retries": False, "redirect": False, "preload_content": False}
    manager = pools_for(environment)
    if environment.proxy is not None:  # the proxy manager decides the request's target (absolute for plain HTTP)
        return Answer(manager.request(method, url, body=body, headers=outgoing, timeout=timeout, **options))
    # What PoolManager.urlopen does without a proxy, with the URL parsed once per process instead of at every
    # call: 40 to 50 µs of CPU less per call (a loopback vendor, one thread, 2,000 calls each way).
    target = _parsed(url)
    pool = manager.connection_from_host(target.host, port=target.port, scheme=target.scheme)
    raw = pool.urlopen(
        method, target.request_uri, body=body, headers=outgoing, timeout=timeout, assert_same_host=False, **options
    )
    return Answer(raw)


@lru_cache(maxsize=1024)
def _parsed(url: str) -> Url:
    """``url`` as urllib3 parses it (its URLs are immutable): a provider calls the same few again and again."""
    return parse_url(url)


def json_body(payload: Mapping[str, Any]) -> bytes:
    """A JSON request body as ``requests`` would send it (NaN and infinities refused: they are not JSON)."""
    return json.dumps(payload, allow_nan=False).encode()


class Answer:
    """A vendor's answer as the adapters read it: ``status_code``, ``headers`` (case-insensitive), the body once
    as ``content``, ``text`` or ``json()``, or line by line as it streams in; ``close()`` when done."""

    def __init__(self, raw: BaseHTTPResponse) -> None:
        self._raw = raw
        self.status_code = raw.status
        self.headers = raw.headers
        self._content: bytes | None = None
        self._chunks: Iterator[bytes] | None = None

    @property
    def content(self) -> bytes:
        """The whole body, decoded from gzip or deflate; read from the connection on first use."""
        if self._content is None:
            self._content = self._raw.read(decode_content=True)
        return self._content

    @property
    def text(self) -> str:
        """The body as text in its declared charset (UTF-8 when it declares none), undecodable bytes replaced."""
        message = Message()
        message["content-type"] = self.headers.get("Content-Type", "")
        charset = message.get_content_charset() or "utf-8"
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not."""
        return json.loads(self.content)

    def iter_lines(self) -> Iterator[str]:
        """The body's lines as they arrive (see :func:`lines_of`)."""
        self._chunks = self._raw.stream(STREAM_CHUNK_BYTES, decode_content=True)
        return lines_of(self._chunks)

    def close(self) -> None:
        """Return the connection to its pool when the body was read to its end, or a streamed body's end
        could be read at once (see :data:`DRAIN_BYTES`); else close it (a half-read body cannot be followed
        by another request on the same connection). The next request on a kept connection sets its own
        socket timeout again (urllib3's ``HTTPConnection.request``)."""
        if self._content is None and not self._raw.closed and not self._drained():
            self._raw.close()
        self._raw.release_conn()

    def _drained(self) -> bool:
        """Read what is left of a streamed body, within :data:`DRAIN_BYTES` and :data:`DRAIN_WAIT_S`; True
        when its end was reached."""
        sock = getattr(self._raw.connection, "sock", None)
        if self._chunks is None or sock is None:
            return False
        left = DRAIN_BYTES
        deadline = time.monotonic() + DRAIN_WAIT_S
        try:
            while (wait_s := deadline - time.monotonic()) > 0:
                sock.settimeout(wait_s)  # each read waits only for what is left of the time
                chunk = next(self._chunks, None)
                if chunk is None:
                    return bool(self._raw.closed)
                left -= len(chunk)
                if left < 0:
                    return False
        except (HTTPError, OSError):  # a read that timed out, a connection the server or a cut closed
            return False
        return False


def lines_of(chunks: Iterable[bytes]) -> Iterator[str]:
    """The lines of a body arriving in ``chunks``, split at ``\\n``, ``\\r\\n`` or ``\\r`` and decoded as UTF-8,
    each as soon as its end arrived. A line whose ``\\r`` ends a chunk waits for the next one, so a ``\\r\\n``
    split between two chunks is one line ending, not two (a blank line dispatches a server-sent event)."""
    pending = b""
    for chunk in chunks:
        lines = (pending + chunk).splitlines(keepends=True)
        pending = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        for line in lines:
            yield line.rstrip(b"\r\n").decode("utf-8", errors="replace")
    if pending:
        yield pending.rstrip(b"\r").decode("utf-8", errors="replace")
