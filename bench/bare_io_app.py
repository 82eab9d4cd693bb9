"""Bare Celery calling a chat API, the baseline of the I/O-bound fleet benchmark (bench/io_fleet.py).

``celery -A bench.bare_io_app worker`` with the broker in ``BENCH_BROKER_URL`` and the fake provider's
``/v1`` in ``BENCH_FAKE_URL``. ``bare.chat`` posts the request to ``/chat/completions`` with ``requests``,
one Session per pool thread (so no thread waits for another's connection), and returns the answer's text:
what a team would write before it had breakers, rate limits, fallbacks or a cache. A module of its own,
not a task in bench/bare_app.py, so that ``requests`` stays out of the memory benchmark's baseline.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import requests
from celery import Celery

from bench.bare_app import BROKER_ENV, RELIABILITY

FAKE_URL_ENV = "BENCH_FAKE_URL"
KEY_ENV = "BENCH_FAKE_KEY"
#: The worker's concurrency, when above Celery's defaults: its pools are sized for it as a careful team would
#: (kombu's broker pool holds 10 connections and redis-py's 100; a gevent worker of 1,000 fails to ack without).
CONCURRENCY_ENV = "BENCH_BARE_CONCURRENCY"
#: The model the benchmark names on both sides.
MODEL = "bench-model"

_local = threading.local()


def thread_session() -> requests.Session:
    """This pool thread's own ``requests.Session`` (no thread waits for another's connection)."""
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def pool_size(concurrency: int) -> int | None:
    """Connections each Redis pool of a bare worker holds at ``concurrency`` (None: the library's default)."""
    return concurrency + 16 if concurrency else None


def size_pools(bare: Celery, concurrency: int) -> None:
    """Size ``bare``'s broker and result-backend pools for ``concurrency``, as a careful team would."""
    if size := pool_size(concurrency):
        bare.conf.broker_transport_options = {"max_connections": size}
        bare.conf.redis_max_connections = size


def create_app(broker_url: str, fake_url: str, api_key: str, concurrency: int = 0) -> Celery:
    bare = Celery("bare_io", broker=broker_url, backend=broker_url)
    bare.conf.update(RELIABILITY)
    size_pools(bare, concurrency)
    endpoint = f"{fake_url.rstrip('/')}/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"}

    @bare.task(name="bare.chat", shared=False)  # type: ignore[untyped-decorator]  # Celery is untyped
    def chat(**request: Any) -> dict[str, Any]:
        response = thread_session().post(endpoint, json={"model": MODEL, **request}, headers=headers, timeout=(5, 30))
        response.raise_for_status()
        body = response.json()
        return {"text": body["choices"][0]["message"]["content"], "usage": body.get("usage")}

    return bare


app = create_app(
    os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/0"),
    os.environ.get(FAKE_URL_ENV, "http://127.0.0.1:8080/v1"),
    os.environ.get(KEY_ENV, ""),
    int(os.environ.get(CONCURRENCY_ENV, "0")),
)
