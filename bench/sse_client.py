"""A lean HTTP/1.1 client for reading a thousand server-sent event streams at once from one process.

bench/stream_scale.py times the first token of a thousand streams opened at once. Read with ``httpx``, the
client itself was the bottleneck on a 2-core machine: 31 s of CPU to read a thousand streams of 22 events from
the vendor, 9.5 s through the gateway, and it read the gateway's streams in bursts seconds after the gateway had
sent them (first deltas handed to the socket at 8.5 s were read at 12.3 s). This client does only what those
streams need, on the event loop's own streams: one connection per request (``Connection: close``), the status
line and headers, then the body in chunked transfer encoding (RFC 9112, section 7.1) or up to
``Content-Length``, split into lines as they arrive.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit


class HttpStatusError(Exception):
    """The server answered with another status than 200; the message holds the status and the body's start."""


async def post_lines(url: str, body: dict[str, Any], headers: dict[str, str]) -> AsyncIterator[bytes]:
    """POST ``body`` as JSON to ``url`` (``http://host:port/path``) and yield the response body's lines (without
    their line ends) as they arrive. Raises :class:`HttpStatusError` for a status other than 200, ``OSError`` for
    a connection that fails, ``asyncio.IncompleteReadError`` for one closed before the response ends (in its
    head or its body)."""
    where = urlsplit(url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        payload = json.dumps(body).encode()
        head = [
            f"POST {where.path} HTTP/1.1",
            f"Host: {where.netloc}",
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        status = int((await _line(reader)).split()[1])
        fields: dict[str, str] = {}
        while (line := await _line(reader)) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip()
        chunked = fields.get("transfer-encoding", "").lower() == "chunked"
        if status != 200:
            length = int(fields.get("content-length", "0"))
            text = (await reader.readexactly(length) if length else await reader.read(200))[:200]
            raise HttpStatusError(f"HTTP {status}: {text!r}")
        pieces = _chunks(reader) if chunked else _until_closed(reader)
        pending = b""
        async for piece in pieces:
            pending += piece
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r")
        if pending:
            yield pending
    finally:
        writer.close()


async def _line(reader: asyncio.StreamReader) -> bytes:
    """The next line with its line end; ``asyncio.IncompleteReadError`` if the connection closes first."""
    line = await reader.readline()
    if not line.endswith(b"\n"):
        raise asyncio.IncompleteReadError(line, None)
    return line


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while (size := int((await _line(reader)).split(b";")[0], 16)) > 0:
        yield (await reader.readexactly(size + 2))[:-2]


async def _until_closed(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while piece := await reader.read(65536):
        yield piece
