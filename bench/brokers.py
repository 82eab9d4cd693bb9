"""Which broker when: the same stepper workload on each broker stepper runs on, against plain Redis.

The workload is the overhead benchmark's throughput (bench/overhead.py): ``TASKS`` mock chats through the whole
guard stack, submitted then awaited, one worker (threads x4). Only the broker changes: Redis (one private
redis-server), Redis through Sentinel (one master, one replica, three sentinels: every client asks a sentinel
where the master is, and every write is replicated), RabbitMQ with classic queues (priorities, one node) and
with quorum queues (Raft, one node here: a real cluster adds a network round trip to every publish and ack).
Results and the fleet's state stay on Redis (Sentinel's master for the Sentinel run). Sides alternate over
``ROUNDS`` rounds; each figure is a median and each ratio the median of per-round ratios against Redis.

``python -m bench brokers`` runs this alone (about a minute and a half); ``make bench`` runs it with the others.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from shutil import which
from typing import Any

from celery import Celery

from bench.harness import Figure, compare, fleet_at, progress, redis_url
from bench.overhead import CONCURRENCY, STEPPER_SETTINGS, Send, chat_request, throughput
from tests.support.rabbitmq_server import RabbitMQServer
from tests.support.redis_server import RedisServer
from tests.support.sentinel import SentinelGroup

ROUNDS = 2
WARM_UP = 50
BROKERS = ("redis", "sentinel", "rabbitmq", "rabbitmq-quorum")


@contextmanager
def _fleets(redis: RedisServer, stack: ExitStack) -> Iterator[dict[str, Any]]:
    directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    sentinel = SentinelGroup(which("redis-server") or "redis-server", directory / "sentinel")
    sentinel.directory.mkdir()
    stack.callback(sentinel.stop)
    sentinel.start()
    rabbitmq = RabbitMQServer(directory / "rabbitmq")
    stack.callback(rabbitmq.stop)
    rabbitmq.start()
    options: dict[str, Any] = {"pool": "threads", "concurrency": CONCURRENCY, "queues": ["chat"]}
    quorum = {**STEPPER_SETTINGS, "stepper_rabbitmq": {"queue_type": "quorum"}}
    started = {
        "redis": fleet_at(redis_url(redis, 12), STEPPER_SETTINGS, name="bench-redis", **options),
        "sentinel": fleet_at(sentinel.url, STEPPER_SETTINGS, name="bench-sentinel", **options),
        "rabbitmq": fleet_at(
            redis_url(redis, 13), STEPPER_SETTINGS, broker_url=rabbitmq.url(1), name="bench-rabbitmq", **options
        ),
        "rabbitmq-quorum": fleet_at(
            redis_url(redis, 14), quorum, broker_url=rabbitmq.url(2), name="bench-quorum", **options
        ),
    }
    yield {name: stack.enter_context(context)[0] for name, context in started.items()}


def chat_sender(app: Celery) -> Send:
    def send(request: dict[str, Any]) -> Any:
        return app.send_task("stepper.chat", kwargs=request)

    return send


def run(redis: RedisServer) -> dict[str, dict[str, Any]]:
    progress(f"brokers: starting Sentinel (master, replica, 3 sentinels), a RabbitMQ node and {len(BROKERS)} workers")
    per_second: dict[str, list[float]] = {name: [] for name in BROKERS}
    with ExitStack() as stack, _fleets(redis, stack) as apps:
        senders = {name: chat_sender(app) for name, app in apps.items()}
        for name, send in senders.items():
            for result in [send(chat_request(f"warm-up {name}", index)) for index in range(WARM_UP)]:
                result.get(timeout=60)
        for round_number in range(ROUNDS):
            order = list(BROKERS) if round_number % 2 == 0 else list(reversed(BROKERS))
            for name in order:
                progress(f"brokers: round {round_number + 1}/{ROUNDS}, {name}")
                per_second[name].append(throughput(senders[name], f"{name} round {round_number}"))
    baseline = Figure("stepper.chat on Redis", statistics.median(per_second["redis"]), "tasks/s")
    results: dict[str, dict[str, Any]] = {}
    for name in BROKERS[1:]:
        ratios = [value / plain for value, plain in zip(per_second[name], per_second["redis"], strict=True)]
        results[f"brokers.{name}"] = compare(
            Figure(f"stepper.chat on {name}", statistics.median(per_second[name]), "tasks/s"),
            baseline,
            "none: context for README, which broker when",
            True,
            ratio=statistics.median(ratios),
            rounds={side: [round(value, 1) for value in per_second[side]] for side in ("redis", name)},
        )
    return results
