"""bench.sse_client against a real server on 127.0.0.1: a stream cut short is an error the benchmark counts."""

from __future__ import annotations

import asyncio

import pytest

from bench.sse_client import HttpStatusError, post_lines

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def read_all(answer: bytes) -> list[bytes]:
    """POST to a server that reads the request's head and body, sends ``answer`` and closes; the lines read."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.startswith(b"Content-Length"))
        await reader.readexactly(length)
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        return [line async for line in post_lines(f"http://127.0.0.1:{port}/v1/chat", {"stream": True}, {})]


def run(answer: bytes) -> list[bytes]:
    return asyncio.run(read_all(answer))


def test_a_whole_chunked_stream_is_read_line_by_line() -> None:
    body = chunk(b'data: {"a": 1}\n\nda') + chunk(b"ta: [DONE]\n\n") + b"0\r\n\r\n"
    assert run(HEAD + body) == [b'data: {"a": 1}', b"", b"data: [DONE]", b""]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"", id="closed before the status line"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Enc", id="closed in the head"),
        pytest.param(HEAD + chunk(b"data: {}\n\n"), id="closed before the next chunk's size"),
        pytest.param(HEAD + b"10\r\ndata", id="closed inside a chunk"),
    ],
)
def test_a_connection_closed_before_the_response_ends_is_an_incomplete_read(answer: bytes) -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        run(answer)


def test_another_status_is_raised_with_the_body() -> None:
    with pytest.raises(HttpStatusError, match="HTTP 503: b'busy'"):
        run(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
