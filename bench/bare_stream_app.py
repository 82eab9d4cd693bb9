"""Bare Celery relaying a streamed chat, the baseline of the first-token benchmark (bench/stream_latency.py).

What a team would write to put streamed chats behind Celery without stepper: a worker task that asks the vendor
with ``stream: true`` and appends each content delta to a Redis stream of the request's own, and a small ASGI
gateway that publishes the task and relays that stream to the client as server-sent events in OpenAI's chunk
shape. It has no authentication, validation, rate limit, breaker, fallback, cache, journal or batching of
deltas, and the task stores no result (``ignore_result``: the stream is the answer), so it is the cheapest
relay through Celery, not a like-for-like one: the difference from the vendor asked directly is what the
architecture itself costs on the machine (two more processes and two trips through Redis), and stepper's
difference from it is what stepper adds on top.

    celery -A bench.bare_stream_app worker --pool threads        # the worker
    uvicorn bench.bare_stream_app:gateway --http httptools --loop uvloop   # the gateway

Both read the broker (and Redis) URL from ``BENCH_BROKER_URL``, and the worker the vendor's ``/v1`` from
``BENCH_FAKE_URL`` and its key from ``BENCH_FAKE_KEY``; ``BENCH_BARE_CONCURRENCY`` sizes the Redis pools of both
for that many tasks or streams at once. The gateway serves uvicorn with httptools and uvloop,
as stepper's does. It publishes on the event loop, the shortest way and the one a first version takes: while
Redis answers the publish no other request moves, and a Redis that stops answering freezes them all (stepper's
gateway publishes in a thread for that reason, a hop that costs about 0.3 to 0.5 ms on a 2-core machine).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import redis
import redis.asyncio
import requests
from celery import Celery
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bench.bare_app import BROKER_ENV, RELIABILITY
from bench.bare_io_app import CONCURRENCY_ENV, FAKE_URL_ENV, KEY_ENV, MODEL, pool_size, size_pools, thread_session

TASK = "bare.stream_chat"
#: How long a relayed stream is kept in Redis after its last delta, seconds.
STREAM_TTL_S = 300
#: How long the gateway waits for the next delta before it gives up on a stream, milliseconds.
READ_BLOCK_MS = 30_000


def create_app(broker_url: str, fake_url: str, api_key: str, concurrency: int = 0) -> Celery:
    bare = Celery("bare_stream", broker=broker_url)
    bare.conf.update(RELIABILITY)
    size_pools(bare, concurrency)
    endpoint = f"{fake_url.rstrip('/')}/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"}
    store = redis.Redis.from_url(broker_url, max_connections=pool_size(concurrency))

    @bare.task(name=TASK, ignore_result=True, shared=False)  # type: ignore[untyped-decorator]  # Celery is untyped
    def stream_chat(stream: str, **request: Any) -> None:
        body = {"model": MODEL, "stream": True, **request}
        try:
            with thread_session().post(endpoint, json=body, headers=headers, stream=True, timeout=(5, 30)) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if line.startswith(b"data: {"):
                        choices = json.loads(line[6:]).get("choices") or [{}]
                        content = choices[0].get("delta", {}).get("content")
                        if content:
                            store.xadd(stream, {"d": content})
        except requests.RequestException as error:
            store.xadd(stream, {"error": str(error)})
        store.xadd(stream, {"end": "1"})
        store.expire(stream, STREAM_TTL_S)

    return bare


BROKER_URL = os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/0")
#: The worker's concurrency, or the streams the gateway relays at once: each blocked read holds a connection.
CONCURRENCY = int(os.environ.get(CONCURRENCY_ENV, "0"))
app = create_app(
    BROKER_URL, os.environ.get(FAKE_URL_ENV, "http://127.0.0.1:8080/v1"), os.environ.get(KEY_ENV, ""), CONCURRENCY
)
#: redis-py 8 gives up on a reply after 5 s by default, a blocked read's included: wait past the block.
_streams = redis.asyncio.Redis.from_url(
    BROKER_URL, max_connections=pool_size(CONCURRENCY), socket_timeout=READ_BLOCK_MS / 1000 + 5
)


async def _completions(request: Request) -> Response:
    body = await request.json()
    stream = f"bare-stream:{uuid.uuid4().hex}"
    kwargs = {"stream": stream, "messages": body["messages"]}
    app.send_task(TASK, kwargs=kwargs)
    return StreamingResponse(_relayed(stream), media_type="text/event-stream")


async def _relayed(stream: str) -> AsyncIterator[bytes]:
    last: bytes | str = "0-0"
    while True:
        reply: list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] = await _streams.xread(  # type: ignore[assignment]  # redis-py types a RESP3 shape too
            {stream: last}, block=READ_BLOCK_MS
        )
        if not reply:
            yield b'data: {"error": "no delta within 30 s"}\n\n'
            return
        for entry_id, fields in reply[0][1]:
            last = entry_id
            if b"end" in fields:
                yield b"data: [DONE]\n\n"
                return
            if b"error" in fields:
                yield b"data: " + json.dumps({"error": fields[b"error"].decode()}).encode() + b"\n\n"
                continue
            delta = {"index": 0, "delta": {"content": fields[b"d"].decode()}, "finish_reason": None}
            chunk = {"object": "chat.completion.chunk", "model": MODEL, "choices": [delta]}
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def _live(request: Request) -> Response:
    return Response("ok")


gateway = Starlette(
    routes=[Route("/v1/chat/completions", _completions, methods=["POST"]), Route("/health/live", _live)]
)
