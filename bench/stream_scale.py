"""A thousand streamed chats at once through the gateway and one worker, against the vendor asked directly.

The vendor is bench/fake_openai.py in a process of its own: each streamed answer's first token after
``FIRST_TOKEN_S``, then ``CHUNKS`` deltas ``CHUNK_INTERVAL_S`` apart, as OpenAI streams them. The baseline opens
``STREAMS`` streams to it at once, as clients of the vendor would; the candidate opens as many to stepper's
gateway (``POST /v1/chat/completions``, ``stream: true``), which submits each to one worker (threads pool,
concurrency ``STREAMS``) and relays the task streams. A third wave goes through the cheapest relay through
Celery (bench/bare_stream_app.py: a bare task writing each delta to a Redis stream, a bare gateway relaying it,
its worker on the same pool and concurrency): what the architecture itself costs at that size. The clients run
in this process, one asyncio loop reading every event with bench/sse_client.py (with ``httpx`` the client was
the bottleneck, and read streams seconds after they were sent).

Reported: time to the first content chunk (p50 and p95) on every side and what stepper and the bare relay add,
the streams that failed or lost text (target: none through stepper), CPU per stream of each side's processes,
and the Redis stream writes per vendor delta (stepper's worker batches deltas: well under one write per token),
with stepper's worker's and gateway's peak RSS. ``BENCH_STREAMS`` sets the count.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import bare_io_app
from bench.fake_openai import API_KEY
from bench.harness import Figure, compare, cpu_seconds, fleet, percentile, progress, redis_url
from bench.io_fleet import fake_provider
from bench.memory import memory_mb
from bench.sse_client import HttpStatusError, post_lines
from bench.stream_latency import KEY, KEY_ENVIRONMENT, bare_relay, settings
from tests.support.gateway import running_gateway
from tests.support.redis_server import RedisServer

STREAMS = int(os.environ.get("BENCH_STREAMS", "1000"))
FIRST_TOKEN_S = 1.0
CHUNKS = 20
CHUNK_INTERVAL_S = 0.01
#: The longest one stream may take, start to end.
STREAM_TIMEOUT_S = 300.0
#: Every content delta the fake sends, joined: what each stream must deliver whole.
ANSWER = "".join(f"token{index} " for index in range(CHUNKS))
DATABASE = 11
BARE_DATABASE = 12


@dataclass(frozen=True)
class Streamed:
    """One streamed chat as its client saw it: seconds to the first content, the text, or the error."""

    first_token_s: float | None
    text: str
    error: str | None = None
    #: Seconds to the stream's first event (the gateway sends the role chunk once the task is submitted).
    opened_s: float | None = None


async def stream_one(url: str, headers: dict[str, str], index: int) -> Streamed:
    body = {"model": bare_io_app.MODEL, "stream": True, "messages": [{"role": "user", "content": f"scale #{index}"}]}
    started = time.perf_counter()
    first: float | None = None
    opened: float | None = None
    pieces: list[str] = []
    try:
        async with asyncio.timeout(STREAM_TIMEOUT_S):
            async for line in post_lines(url, body, headers):
                if not line.startswith(b"data: {"):
                    continue
                opened = opened if opened is not None else time.perf_counter() - started
                event = json.loads(line[6:])
                if "error" in event:
                    return Streamed(first, "".join(pieces), f"error event: {event['error'].get('message')}")
                content = ((event.get("choices") or [{}])[0].get("delta") or {}).get("content")
                if content:
                    first = first if first is not None else time.perf_counter() - started
                    pieces.append(content)
    except (HttpStatusError, OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
        return Streamed(first, "".join(pieces), f"{type(exc).__name__}: {exc}")
    return Streamed(first, "".join(pieces), opened_s=opened)


async def wave(url: str, headers: dict[str, str]) -> list[Streamed]:
    """``STREAMS`` streamed chats opened at once."""
    return list(await asyncio.gather(*(stream_one(url, headers, index) for index in range(STREAMS))))


def timed_wave(
    url: str, headers: dict[str, str], pids: dict[str, int], redis: RedisServer
) -> tuple[list[Streamed], float, dict[str, float]]:
    """A :func:`wave` at ``url``, the seconds it took, and the CPU milliseconds per stream that each process of
    ``pids`` (by name) and Redis spent meanwhile."""
    processes = dict(pids) if redis.process is None else {**pids, "redis": redis.process.pid}
    before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    started = time.monotonic()
    streams = asyncio.run(wave(url, headers))
    elapsed_s = time.monotonic() - started
    cpu_ms = {name: (cpu_seconds(pid) - before[name]) * 1000 / STREAMS for name, pid in processes.items()}
    return streams, elapsed_s, cpu_ms


def stream_writes(redis: RedisServer) -> int:
    """XADD calls the server has run so far (every stepper stream write is one)."""
    stats = redis.client().info("commandstats").get("cmdstat_xadd", {})
    return int(stats.get("calls", 0))


def run(redis: RedisServer) -> dict[str, dict[str, Any]]:
    progress(f"stream_scale: {STREAMS} streamed chats at once, direct then via the gateway and one worker")
    fake_options = ("--chunks", str(CHUNKS), "--chunk-interval", str(CHUNK_INTERVAL_S))
    with fake_provider(FIRST_TOKEN_S, *fake_options) as base_url:
        config = settings(base_url)
        with (
            fleet(
                redis,
                DATABASE,
                config,
                name="bench-stream-scale",
                env=KEY_ENVIRONMENT,
                pool="threads",
                concurrency=STREAMS,
                queues=["chat"],
            ) as (_, worker),
            tempfile.TemporaryDirectory() as directory,
            running_gateway(redis_url(redis, DATABASE), Path(directory), config, env=KEY_ENVIRONMENT) as gateway,
        ):
            direct = asyncio.run(wave(f"{base_url}/chat/completions", {"Authorization": f"Bearer {API_KEY}"}))
            progress(f"stream_scale: direct done; now {STREAMS} via the gateway")
            writes_before = stream_writes(redis)
            relayed, elapsed_s, cpu_ms = timed_wave(
                f"{gateway.url}/v1/chat/completions",
                {"Authorization": f"Bearer {KEY}"},
                {"worker": worker.process.pid, "gateway": gateway.process.pid},
                redis,
            )
            writes = stream_writes(redis) - writes_before
            worker_mb = memory_mb(worker.process.pid, "VmHWM")
            gateway_mb = memory_mb(gateway.process.pid, "VmHWM")
        progress(f"stream_scale: now {STREAMS} via a bare Celery relay")
        with (
            tempfile.TemporaryDirectory() as directory,
            bare_relay(redis_url(redis, BARE_DATABASE), base_url, Path(directory), STREAMS) as (bare_url, bare_pids),
        ):
            bare, bare_elapsed_s, bare_cpu_ms = timed_wave(bare_url, {}, bare_pids, redis)
    failed, failed_direct, failed_bare = (_broken(streams) for streams in (relayed, direct, bare))
    via_ms = _first_tokens_ms(relayed)
    direct_ms = _first_tokens_ms(direct)
    bare_ms = _first_tokens_ms(bare)
    added_ms = percentile(via_ms, 0.5) - percentile(direct_ms, 0.5)
    bare_added_ms = percentile(bare_ms, 0.5) - percentile(direct_ms, 0.5)
    writes_per_delta = writes / (STREAMS * CHUNKS)
    return {
        "stream_scale.first_token": compare(
            Figure(f"first token, {STREAMS} streams at once via the gateway (p50)", percentile(via_ms, 0.5), "ms"),
            Figure(f"first token, {STREAMS} streams at once direct (p50)", percentile(direct_ms, 0.5), "ms"),
            f"every stream whole: {len(failed)} of {STREAMS} failed or lost text ({len(failed_direct)} direct, "
            f"{len(failed_bare)} through a bare Celery relay); stepper adds {added_ms:.0f} ms at p50, the bare "
            f"relay {bare_added_ms:.0f} ms",
            not failed,
            added_ms=round(added_ms, 1),
            opened_p50_ms=round(percentile(_opened_ms(relayed), 0.5), 1),
            p95_ms={
                "gateway": round(percentile(via_ms, 0.95), 1),
                "direct": round(percentile(direct_ms, 0.95), 1),
                "bare": round(percentile(bare_ms, 0.95), 1),
            },
            failed=len(failed),
            errors=_errors(failed),
            streams_per_s=round(STREAMS / elapsed_s, 1),
            cpu_ms_per_stream={name: round(value, 2) for name, value in cpu_ms.items()},
            bare={
                "first_token_p50_ms": round(percentile(bare_ms, 0.5), 1),
                "added_ms": round(bare_added_ms, 1),
                "failed": len(failed_bare),
                "errors": _errors(failed_bare),
                "streams_per_s": round(STREAMS / bare_elapsed_s, 1),
                "cpu_ms_per_stream": {name: round(value, 2) for name, value in bare_cpu_ms.items()},
            },
            peak_rss_mb={"worker": round(worker_mb, 1), "gateway": round(gateway_mb, 1)},
        ),
        "stream_scale.writes": compare(
            Figure("Redis stream writes per vendor delta (batched)", writes_per_delta, "writes"),
            Figure("one write per delta", 1.0, "writes"),
            f"< 0.5 writes per delta ({writes} XADD for {STREAMS * CHUNKS} deltas)",
            writes_per_delta < 0.5,
        ),
    }


def _first_tokens_ms(streams: list[Streamed]) -> list[float]:
    return [streamed.first_token_s * 1000 for streamed in streams if streamed.first_token_s is not None] or [0.0]


def _opened_ms(streams: list[Streamed]) -> list[float]:
    return [streamed.opened_s * 1000 for streamed in streams if streamed.opened_s is not None] or [0.0]


def _broken(streams: list[Streamed]) -> list[Streamed]:
    """The streams that failed or did not deliver the whole answer."""
    return [streamed for streamed in streams if streamed.error is not None or streamed.text != ANSWER]


def _errors(failed: list[Streamed]) -> list[str]:
    """Up to three distinct reasons among ``failed`` streams."""
    return sorted({streamed.error or "text lost" for streamed in failed})[:3]
