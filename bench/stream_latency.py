"""Time to first token through stepper: a streamed chat via the gateway and a worker, against the vendor direct.

A loopback OpenAI-compatible vendor (tests/support/vendors/openai_compatible.py) streams each answer after
``FIRST_BYTE_S``, in ``CHUNKS`` deltas. The baseline asks it directly, as a client of the vendor would; the
candidate asks stepper's gateway (``POST /v1/chat/completions``, ``stream: true``), which submits a chat task
to a live worker whose provider is that vendor, and relays the task's stream as server-sent events. Both read
with ``requests`` and stop the clock at the first chunk carrying content. The two alternate, ``REQUESTS``
times each, and the difference of the medians is what stepper adds. Target (performance issue): at most 5 ms
at p50.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench import bare_io_app
from bench.fake_openai import API_KEY
from bench.harness import Figure, compare, fleet, progress, redis_url
from bench.io_fleet import KEY_ENV, stepper_settings
from stepper.gateway.auth import key_digest
from tests.support.fake_http import serving
from tests.support.gateway import running_gateway
from tests.support.redis_server import RedisServer
from tests.support.vendors.openai_compatible import FakeOpenAICompatible

REQUESTS = 40
WARM_UP = 5
FIRST_BYTE_S = 0.05
CHUNKS = 20
TARGET_MS = 5.0
KEY = "stp_bench-stream-key-7d2c"
MODEL = bare_io_app.MODEL
#: The provider's key, in the worker's and the gateway's environment (the vendor fake takes any).
KEY_ENVIRONMENT = {KEY_ENV: API_KEY}


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


def run(redis: RedisServer) -> dict[str, dict[str, Any]]:
    progress(f"stream_latency: {REQUESTS} streamed chats via the gateway and direct, vendor first byte "
             f"{FIRST_BYTE_S * 1000:g} ms")  # fmt: skip
    vendor = FakeOpenAICompatible("vllm")
    vendor.first_byte_delay_s = FIRST_BYTE_S
    vendor.chunks = CHUNKS
    config = settings(vendor.base_url)
    samples: dict[str, list[float]] = {"direct": [], "gateway": []}
    with (
        serving(vendor),
        fleet(
            redis, 10, config, name="bench-stream", env=KEY_ENVIRONMENT, pool="threads", concurrency=8, queues=["chat"]
        ),
        tempfile.TemporaryDirectory() as directory,
        running_gateway(redis_url(redis, 10), Path(directory), config, env=KEY_ENVIRONMENT) as gateway,
    ):
        sides = {
            "direct": (f"{vendor.base_url}/chat/completions", {}),
            "gateway": (f"{gateway.url}/v1/chat/completions", {"Authorization": f"Bearer {KEY}"}),
        }
        for index in range(WARM_UP + REQUESTS):
            for name, (url, headers) in sides.items():
                seconds = first_token_s(url, headers, index)
                if index >= WARM_UP:
                    samples[name].append(seconds)
    gateway_ms = statistics.median(samples["gateway"]) * 1000
    direct_ms = statistics.median(samples["direct"]) * 1000
    added_ms = gateway_ms - direct_ms
    return {
        "stream_latency.first_token": compare(
            Figure("first token via the gateway and a worker (p50)", gateway_ms, "ms"),
            Figure("first token from the vendor direct (p50)", direct_ms, "ms"),
            f"<= +{TARGET_MS:g} ms at p50 (added: {added_ms:.1f} ms)",
            added_ms <= TARGET_MS,
            added_ms=round(added_ms, 1),
        ),
    }
