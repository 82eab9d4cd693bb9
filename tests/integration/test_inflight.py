"""Many vendor calls in flight in one worker process, on the threads and the gevent pool, with zero errors.

Every pool a finishing task draws on (the broker transport's, the result backend's, stepper's state clients',
the HTTP session's) used to be capped below the worker's concurrency: kombu's at 10, redis-py's at 100. Here a
worker of ``CONCURRENCY`` (above both) runs a backlog against a loopback OpenAI-compatible vendor that holds
each answer long enough for the calls to pile up, and the vendor's own count shows how many were in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from hashlib import sha1
from typing import Any

import pytest

from stepper.infra import lua
from tests.integration.conftest import Fleet
from tests.support.fake_http import running
from tests.support.monitor import monitored
from tests.support.vendors.openai_compatible import FakeOpenAICompatible

CONCURRENCY = 150
TASKS = 3 * CONCURRENCY
#: Long enough for a whole pool's worth of calls to be waiting at once on a busy 2-core machine.
VENDOR_LATENCY_S = 1.5


@pytest.fixture(scope="module")
def vendor() -> Iterator[FakeOpenAICompatible]:
    yield from running(FakeOpenAICompatible("vllm"))  # type: ignore[misc]


def live_settings(vendor: FakeOpenAICompatible) -> dict[str, Any]:
    chain = ["loopback:served-model"]
    return {
        "stepper_mode": "live",
        "stepper_providers": {
            "loopback": {
                "class": "stepper.providers.openai:OpenAIProvider",
                "kinds": ["chat", "report"],
                "base_url": vendor.base_url,
                "models": ["served-model"],
                "rpm": 1_000_000,
                "tpm": 1_000_000_000,
            },
        },
        "stepper_chains": {"chat": chain, "report": chain},
    }


@pytest.mark.parametrize("pool", ["threads", "gevent"])
def test_a_pool_wider_than_every_default_finishes_its_backlog_without_an_error(
    pool: str, vendor: FakeOpenAICompatible, start_fleet: Callable[..., Fleet]
) -> None:
    vendor.first_byte_delay_s = VENDOR_LATENCY_S
    vendor.answering_peak = 0
    vendor.requests.clear()
    fleet = start_fleet(live_settings(vendor), name=f"inflight-{pool}", pool=pool, concurrency=CONCURRENCY)
    prompts = [f"{pool} #{index}" for index in range(TASKS)]
    pending = [
        fleet.app.send_task("stepper.chat", kwargs={"messages": [{"role": "user", "content": prompt}]})
        for prompt in prompts
    ]
    answers = [result.get(timeout=300)["output"]["message"]["content"] for result in pending]
    assert answers == [f"vllm says: {prompt}" for prompt in prompts]
    assert len(vendor.requests) == TASKS  # each task called the vendor exactly once: nothing redelivered
    assert vendor.answering_peak > 100  # more calls at once than redis-py's default pool has connections
    log = fleet.worker.log()
    for fault in ("MaxConnectionsError", "Couldn't ack", "Unrecoverable error", "filedescriptor out of range"):
        assert fault not in log


@pytest.mark.parametrize("pool", ["threads", "gevent"])
def test_a_worker_does_not_connect_to_redis_again_for_every_task(pool: str, start_fleet: Callable[..., Fleet]) -> None:
    """Celery builds a result backend per thread, and under gevent every task is a greenlet of its own: each
    task's backend made a client, a pool and a connection to Redis for its one store. Now the backends of a
    worker share one client; ``total_connections_received`` counts every connection Redis accepted."""
    fleet = start_fleet({"stepper_mode": "mock"}, name=f"connections-{pool}", pool=pool, concurrency=8)
    chats = 60
    request = {"messages": [{"role": "user", "content": "warm"}], "cache": "bypass"}
    fleet.app.send_task("stepper.chat", kwargs=request).get(timeout=60)
    before = int(fleet.redis.info("stats")["total_connections_received"])
    for index in range(chats):  # one at a time: a task's connection is never in use when the next starts
        request = {"messages": [{"role": "user", "content": f"#{index}"}], "cache": "bypass"}
        fleet.app.send_task("stepper.chat", kwargs=request).get(timeout=60)
    assert int(fleet.redis.info("stats")["total_connections_received"]) - before < chats / 4


#: The admission alone, and the cache probe that asks it when it claims a computation (their EVALSHA digests).
ADMISSION_ALONE = sha1(lua.source("admission", "admit").encode()).hexdigest()
ADMISSION_WITH_PROBE = sha1(lua.source("cache_claim", "admission", "cache_probe_admit").encode()).hexdigest()


@dataclass
class Chatting:
    """A mock-mode fleet whose provider's limits never wait, and its chats (``extra`` in every request)."""

    fleet: Fleet
    extra: dict[str, Any]

    def __call__(self, content: str) -> dict[str, Any]:
        request = {"messages": [{"role": "user", "content": content}], **self.extra}
        answer: dict[str, Any] = self.fleet.app.send_task("stepper.chat", kwargs=request).get(timeout=60)
        return answer

    def commands(self, seen: list[dict[str, Any]]) -> list[str]:
        """The commands MONITOR ``seen`` in this fleet's database."""
        database = int(self.fleet.url.rsplit("/", 1)[1])
        return [command["command"] for command in seen if command["db"] == database]

    def scripts(self, seen: list[dict[str, Any]]) -> list[str]:
        """The digests of the scripts this fleet's database ran among the commands MONITOR ``seen``."""
        return [command.split()[1] for command in self.commands(seen) if command.startswith("EVALSHA ")]


def chatting(start_fleet: Callable[..., Fleet], name: str, **extra: Any) -> Chatting:
    mock = {"class": "stepper.providers.mock:MockProvider", "rpm": 100_000, "tpm": 10_000_000}
    return Chatting(start_fleet({"stepper_mode": "mock", "stepper_providers": {"mock": mock}}, name=name), extra)


def test_a_chat_that_misses_the_cache_asks_its_admission_in_the_probe_s_round_trip(
    start_fleet: Callable[..., Fleet],
) -> None:
    """Before its first provider call a chat that misses the cache used to make two round trips: the probe that
    claims its computation, then the admission. Now the probe's script asks the admission when it claims
    (``lua/cache_probe_admit.lua``); a hit asks none. Counted with Redis's MONITOR, by script."""
    chat = chatting(start_fleet, "probe-admits", temperature=0)
    bucket = "stepper:{mock}:rpm"
    chat("warm")
    misses = 10
    with monitored(chat.fleet.redis) as seen:
        answers = [chat(f"miss #{index}") for index in range(misses)]
        hits = [chat("warm") for _ in range(5)]
    assert [answer["cached"] for answer in answers] == [False] * misses
    assert [hit["cached"] for hit in hits] == [True] * 5
    scripts = chat.scripts(seen)
    assert scripts.count(ADMISSION_ALONE) == 0
    assert scripts.count(ADMISSION_WITH_PROBE) == misses + 5  # every probe, and only the misses took a request:
    taken = [command for command in chat.commands(seen) if command.startswith(f"HSET {bucket} ")]
    assert len(taken) == misses


def test_a_chat_no_probe_precedes_asks_its_admission_once(start_fleet: Callable[..., Fleet]) -> None:
    """A chat without a temperature is never read from the cache: its admission is sent as the task starts
    (``AdmissionAhead.ask_now``) and read by the call, which does not ask again. Counted with MONITOR."""
    chat = chatting(start_fleet, "asks-now")
    chat("warm")
    chats = 10
    with monitored(chat.fleet.redis) as seen:
        answers = [chat(f"sampled #{index}") for index in range(chats)]
    assert [answer["provider"] for answer in answers] == ["mock"] * chats
    scripts = chat.scripts(seen)
    assert scripts.count(ADMISSION_ALONE) == chats
    assert scripts.count(ADMISSION_WITH_PROBE) == 0
