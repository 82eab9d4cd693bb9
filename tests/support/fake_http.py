"""A loopback HTTP server for fake vendors, with faults that can be injected per request.

A vendor fake registers routes: ``(method, path regex) -> handler(request) -> Reply``. The handler checks the
request against the vendor's documented shape (and answers 400 like the vendor when it is wrong). Before
the handler runs, the next injected ``Fault`` (if any) replaces the answer: an error status with headers,
a delay past the client's timeout, a reset connection, a truncated body, a stream that stops mid-body or one
that ends early. Streams are chunked bodies on kept-alive connections, as real vendors send them. Every
request is recorded with its arrival time, so tests can check Retry-After was honoured.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    arrived: float
    #: The client's (host, port): requests that share it came over one kept-alive connection.
    peer: tuple[str, int] = ("", 0)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    #: Server-sent events to stream instead of a body: (event name or None, data string) pairs.
    events: Iterable[tuple[str | None, str]] | None = None


@dataclass
class Fault:
    """One injected misbehaviour, used for the next matching request."""

    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering (past the client's read timeout, say)
    reset: bool = False  # close the connection with a TCP reset, no answer
    truncate: bool = False  # send the handler's JSON body cut in half
    stop_stream_after: int | None = None  # send this many events, then drop the connection mid-body
    end_stream_after: int | None = None  # send this many events, then end the body cleanly, its last events unsent

    def stream_cut(self, sent: int) -> Literal["drop", "end"] | None:
        """What this fault does to a stream that sent ``sent`` events so far: drop the connection mid-body, end
        the body early, or nothing."""
        if self.stop_stream_after is not None and sent >= self.stop_stream_after:
            return "drop"
        if self.end_stream_after is not None and sent >= self.end_stream_after:
            return "end"
        return None


#: What stepper's transport says of an event stream whose server dropped the connection mid-body.
DROPPED_MIDWAY = "closed the connection in the middle of its event stream"


def stream_cuts(after: int, unfinished: str) -> list[tuple[Fault, str]]:
    """The two ways a stream stops after ``after`` events, each with the error message it must raise: the
    connection dropped mid-body, and the body ended cleanly without its last events (``unfinished``: what the
    adapter names as missing). For ``pytest.mark.parametrize(("fault", "expected"), ...)``."""
    return [(Fault(stop_stream_after=after), DROPPED_MIDWAY), (Fault(end_stream_after=after), unfinished)]


Handler = Callable[[Request], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The standard library listens with a backlog of 5: a worker opening hundreds of connections at once would
    # see SYNs dropped and each retried a second later.
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (a streaming reader stopping at its first token, say) is not the server's
        error: real servers let it go quietly. Anything else is printed, as the standard library does."""
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)


class FakeServer:
    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        """``tls``: serve HTTPS with this context (see tests/support/tls.py)."""
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.requests: list[Request] = []
        self.faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._server = _Server((host, 0), self._handler_class())
        self._scheme = "http" if tls is None else "https"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        # A short poll interval: shutdown() waits for the loop to notice, half a second per server by default.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(pattern), handler))

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body are two writes: with Nagle on, the body waits for the client's delayed ACK (40 ms).
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command,
                    split.path,
                    parse_qs(split.query),
                    {key.lower(): value for key, value in self.headers.items()},
                    self.rfile.read(length),
                    time.monotonic(),
                    (str(self.client_address[0]), int(self.client_address[1])),
                )
                with fake._lock:
                    fake.requests.append(request)
                fault = fake._next_fault()
                if fault and fault.delay_s:
                    time.sleep(fault.delay_s)
                if fault and fault.reset:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                if fault and fault.status is not None:
                    self._send(Reply(fault.status, fault.body, fault.headers))
                    return
                reply = fake._dispatch(request)
                if fault and fault.truncate:
                    data = json.dumps(reply.body).encode()
                    self._send_bytes(reply.status, data[: len(data) // 2], reply.headers, declared=len(data))
                    self.close_connection = True
                    return
                self._send(reply, fault)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def _send(self, reply: Reply, fault: Fault | None = None) -> None:
                if reply.events is not None:
                    self._send_events(reply, fault or Fault())
                    return
                data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                self._send_bytes(reply.status, data, {"Content-Type": "application/json", **reply.headers})

            def _send_bytes(
                self, status: int, data: bytes, headers: dict[str, str], declared: int | None = None
            ) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(declared if declared is not None else len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _send_events(self, reply: Reply, fault: Fault) -> None:
                """Each event a chunk of a chunked body on a kept-alive connection, as uvicorn-served vendors
                (vLLM) and OpenAI's, Anthropic's and Google's APIs stream. A stopped stream drops the connection
                before the terminating chunk, which a client reads as a body cut short; an ended one sends the
                terminating chunk early, a whole body that lacks its last events."""
                self._begin_events(reply)
                try:
                    for sent, (event, data) in enumerate(reply.events or ()):
                        cut = fault.stream_cut(sent)
                        if cut == "drop":
                            self.close_connection = True
                            return
                        if cut == "end":
                            break
                        lines = ([f"event: {event}"] if event else []) + [f"data: {ln}" for ln in data.split("\n")]
                        self._chunk(("\n".join(lines) + "\n\n").encode())
                    self._chunk(b"")
                except (BrokenPipeError, ConnectionResetError):  # the client hung up
                    self.close_connection = True

            def _begin_events(self, reply: Reply) -> None:
                """The status and headers of a streamed answer: a chunked body of server-sent events."""
                self.send_response(reply.status)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        return _Handler

    def _dispatch(self, request: Request) -> Reply:
        for method, pattern, handler in self.routes:
            if method == request.method and pattern.fullmatch(request.path):
                return handler(request)
        return Reply(404, {"error": {"message": f"no route for {request.method} {request.path}"}})


ServerT = TypeVar("ServerT", bound=FakeServer)


@contextmanager
def serving(server: ServerT) -> Iterator[ServerT]:
    """``server`` started for the block, stopped after it however it ends."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


def running(server: FakeServer) -> Iterator[FakeServer]:
    """Fixture helper: start, yield, stop."""
    with serving(server):
        yield server
