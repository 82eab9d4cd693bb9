"""Time to first token through stepper: a streamed chat via the gateway and a worker, against the vendor direct.

A loopback OpenAI-compatible vendor (tests/support/vendors/openai_compatible.py) streams each answer after
``FIRST_BYTE_S``, in ``CHUNKS`` deltas. The baseline asks it directly, as a client of the vendor would; the
candidate asks stepper's gateway (``POST /v1/chat/completions``, ``stream: true``), which submits a chat task
to a live worker whose provider is that vendor, and relays the task's stream as server-sent events. Both read
with ``requests`` and stop the clock at the first chunk carrying content. A third side is the cheapest relay
through Celery (bench/bare_stream_app.py: a bare task appending the vendor's deltas to a Redis stream, a bare
gateway relaying it), its own worker on the same pool and concurrency: what the architecture itself adds on
this machine. The three alternate, ``REQUESTS`` times each, and the difference of the medians from the vendor's
is what each adds. Target (performance issue): stepper adds at most 5 ms at p50; the bare relay's figure is
context, not part of the verdict.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from bench import bare_app, bare_io_app
from bench.fake_openai import API_KEY
from bench.harness import Figure, compare, fleet, progress, redis_url
from bench.io_fleet import KEY_ENV, stepper_settings
from stepper.gateway.auth import key_digest
from tests.support.fake_http import serving
from tests.support.gateway import running_gateway, serving_http
from tests.support.redis_server import RedisServer, free_port
from tests.support.vendors.openai_compatible import FakeOpenAICompatible
from tests.support.workers import REPO_ROOT, start_celery_worker

REQUESTS = 100
WARM_UP = 5
FIRST_BYTE_S = 0.05
CHUNKS = 20
TARGET_MS = 5.0
KEY = "stp_bench-stream-key-7d2c"
MODEL = bare_io_app.MODEL
#: The provider's key, in the worker's and the gateway's environment (the vendor fake takes any).
KEY_ENVIRONMENT = {KEY_ENV: API_KEY}
#: Both workers' pool and concurrency.
POOL, CONCURRENCY = "threads", 8


def settings(base_url: str) -> dict[str, Any]:
    """The I/O fleet's live settings (one provider, the vendor at ``base_url``, limits that never wait), and the
    gateway's key."""
    gateway = {"key_hashes": [key_digest(KEY)], "rpm": 1_000_000, "tpm": 1_000_000_000}
    return {**stepper_settings(base_url), "stepper_gateway": gateway}


def first_token_s(url: str, headers: dict[str, str], index: int) -> float:
    """Seconds from sending a streamed chat to its first chunk with content."""
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": f"stream #{index}"}]}
    started = time.perf_counter()
    with requests.post(url, json=body, headers=headers, stream=True, timeout=60) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith(b"data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    return time.perf_counter() - started
    raise RuntimeError(f"{url} streamed no content")


@contextmanager
def bare_relay(
    url: str, vendor_base_url: str, directory: Path, concurrency: int = CONCURRENCY
) -> Iterator[tuple[str, dict[str, int]]]:
    """A ``bench.bare_stream_app`` worker (threads x ``concurrency``) and gateway, their pools sized for it, with
    their messages and streams at ``url``; yields the gateway's chat completions URL and the two processes' pids
    (``worker``, ``gateway``)."""
    env = {
        bare_app.BROKER_ENV: url,
        bare_io_app.FAKE_URL_ENV: vendor_base_url,
        bare_io_app.KEY_ENV: API_KEY,
        bare_io_app.CONCURRENCY_ENV: str(concurrency),
    }
    worker = start_celery_worker(
        "bench.bare_stream_app", directory, env, name="bench-bare-stream", pool=POOL, concurrency=concurrency
    )
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "bench.bare_stream_app:gateway", "--host", "127.0.0.1", "--port", str(port),
        "--http", "httptools", "--loop", "uvloop", "--no-access-log",
    ]  # fmt: skip
    process_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}
    try:
        with serving_http(command, port, REPO_ROOT, process_env, directory / f"bare-gateway-{port}.log") as gateway:
            yield f"{gateway.url}/v1/chat/completions", {"worker": worker.process.pid, "gateway": gateway.process.pid}
    finally:
        worker.stop()


def run(redis: RedisServer) -> dict[str, dict[str, Any]]:
    progress(f"stream_latency: {REQUESTS} streamed chats via stepper's gateway, via a bare Celery relay and "
             f"direct, vendor first byte {FIRST_BYTE_S * 1000:g} ms")  # fmt: skip
    vendor = FakeOpenAICompatible("vllm")
    vendor.first_byte_delay_s = FIRST_BYTE_S
    vendor.chunks = CHUNKS
    config = settings(vendor.base_url)
    samples: dict[str, list[float]] = {"direct": [], "gateway": [], "bare": []}
    with (
        serving(vendor),
        fleet(
            redis,
            10,
            config,
            name="bench-stream",
            env=KEY_ENVIRONMENT,
            pool=POOL,
            concurrency=CONCURRENCY,
            queues=["chat"],
        ),  # fmt: skip
        tempfile.TemporaryDirectory() as directory,
        running_gateway(redis_url(redis, 10), Path(directory), config, env=KEY_ENVIRONMENT) as gateway,
        bare_relay(redis_url(redis, 11), vendor.base_url, Path(directory) / "bare") as (bare_url, _),
    ):
        sides = {
            "direct": (f"{vendor.base_url}/chat/completions", {}),
            "gateway": (f"{gateway.url}/v1/chat/completions", {"Authorization": f"Bearer {KEY}"}),
            "bare": (bare_url, {}),
        }
        for index in range(WARM_UP + REQUESTS):
            for name, (url, headers) in sides.items():
                seconds = first_token_s(url, headers, index)
                if index >= WARM_UP:
                    samples[name].append(seconds)
    gateway_ms, direct_ms, bare_ms = (statistics.median(samples[side]) * 1000 for side in ("gateway", "direct", "bare"))
    added_ms, bare_added_ms = gateway_ms - direct_ms, bare_ms - direct_ms
    return {
        "stream_latency.first_token": compare(
            Figure("first token via the gateway and a worker (p50)", gateway_ms, "ms"),
            Figure("first token from the vendor direct (p50)", direct_ms, "ms"),
            f"<= +{TARGET_MS:g} ms at p50 (added: {added_ms:.1f} ms; a bare Celery relay adds {bare_added_ms:.1f} ms)",
            added_ms <= TARGET_MS,
            added_ms=round(added_ms, 1),
            bare_relay_ms=round(bare_ms, 1),
            bare_relay_added_ms=round(bare_added_ms, 1),
        ),
    }
