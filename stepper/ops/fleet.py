"""What the fleet looks like right now: queue depths by priority, workers, breakers, rate-limit buckets, spend.

Read by ``stepper status`` (for people) and ``stepper health`` (for probes). On Redis a queue is one list per
priority level (``chat``, ``chat\\x06\\x161``... ``chat\\x06\\x169``): a plain ``LLEN chat`` sees only level 0.
RabbitMQ counts a queue's ready messages but not by priority: its depths are given under :data:`ALL_LEVELS`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from stepper.brokers import broker_kind
from stepper.guards.spend import BudgetUse, budget_uses
from stepper.infra import keys
from stepper.infra.connections import broker_redis
from stepper.priorities import PRIORITY_STEPS
from stepper.settings import StepperSettings

#: kombu's separator between a queue's name and its priority level (its default, kept on purpose).
PRIORITY_SEP = "\x06\x16"
#: The "level" of a depth that counts every priority level at once (RabbitMQ's message count).
ALL_LEVELS = -1


@dataclass(frozen=True)
class WorkerState:
    name: str
    pool: str
    concurrency: int
    queues: list[str]
    active: int


@dataclass
class FleetState:
    redis_ok: bool
    queues: dict[str, dict[int, int]] = field(default_factory=dict)
    workers: list[WorkerState] = field(default_factory=list)
    breakers: dict[str, str] = field(default_factory=dict)
    buckets: dict[str, dict[str, float]] = field(default_factory=dict)
    dead_letters: int = 0
    #: Spend against each configured budget in its current window (providers, models, named gateway keys).
    spend: list[BudgetUse] = field(default_factory=list)
    error: str | None = None

    def problems(self) -> list[str]:
        """What makes the fleet unhealthy: no Redis, a queue nobody consumes, an open breaker."""
        if not self.redis_ok:
            return [f"Redis unreachable: {self.error}"]
        consumed = {queue for worker in self.workers for queue in worker.queues}
        found = [f"queue {queue!r} has no consumer" for queue in self.queues if queue not in consumed]
        found += [f"circuit breaker of {name} is {state}" for name, state in self.breakers.items() if state != "closed"]
        return found


def queue_lists(queue: str) -> list[str]:
    return [queue if level == 0 else f"{queue}{PRIORITY_SEP}{level}" for level in PRIORITY_STEPS]


def queue_depths(app: Any, queues: list[str]) -> dict[str, dict[int, int]]:
    """Messages waiting in each of ``queues`` on ``app``'s broker, by priority level (Redis) or all levels
    together (RabbitMQ, under :data:`ALL_LEVELS`). Raises when the broker cannot be reached."""
    if not queues:
        return {}
    if broker_kind(str(app.conf.broker_url)) == "redis":
        return redis_queue_depths(broker_redis(app.conf), queues)
    return {queue: {ALL_LEVELS: count} for queue, count in rabbitmq_queue_depths(app, queues).items()}


def ping_broker(app: Any) -> None:
    """Raise unless ``app``'s broker answers now (a Redis PING, an AMQP connection opened)."""
    if broker_kind(str(app.conf.broker_url)) == "redis":
        broker_redis(app.conf).ping()
        return
    with app.connection_for_read() as connection:
        connection.connect()


def rabbitmq_queue_depths(app: Any, queues: list[str]) -> dict[str, int]:
    """Ready messages in each queue (a passive declare: a queue not declared yet counts 0)."""
    found: dict[str, int] = {}
    with app.connection_for_read() as connection:
        for queue in queues:
            try:
                found[queue] = int(connection.default_channel.queue_declare(queue=queue, passive=True).message_count)
            except connection.channel_errors:  # not found: the broker closed the channel, the next call opens one
                found[queue] = 0
    return found


def redis_queue_depths(client: Redis, queues: list[str]) -> dict[str, dict[int, int]]:
    """Lengths of each queue's priority lists on a Redis broker, by level."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for name in queue_lists(queue):
            pipe.llen(name)
    lengths = iter(pipe.execute())
    return {queue: {level: int(next(lengths)) for level in PRIORITY_STEPS} for queue in queues}


def breaker_states(client: Redis) -> dict[str, str]:
    states = {}
    for key in client.scan_iter(match=keys.breaker_state_pattern(), count=500):
        name = keys.provider_of(key.decode())
        value = client.get(key)
        states[name] = value.decode() if isinstance(value, bytes) else "unknown"
    return dict(sorted(states.items()))


def rate_buckets(client: Redis) -> dict[str, dict[str, float]]:
    """Tokens left in each provider's requests- and tokens-per-minute buckets (as of their last use)."""
    buckets: dict[str, dict[str, float]] = {}
    for key in client.scan_iter(match=keys.rate_bucket_pattern(), count=500):
        text = key.decode()
        name, kind = keys.provider_of(text), text.rsplit(":", 1)[1]
        tokens = client.hget(key, "tokens")
        if tokens is not None:
            buckets.setdefault(name, {})[kind] = round(float(tokens), 1)
    return dict(sorted(buckets.items()))


def worker_states(app: Any, timeout_s: float) -> list[WorkerState]:
    """Each broadcast waits the whole timeout for replies, so the three are asked at once."""
    inspect = app.control.inspect(timeout=timeout_s)
    with ThreadPoolExecutor(3) as pool:
        asked = [pool.submit(question) for question in (inspect.stats, inspect.active_queues, inspect.active)]
        stats, queues, active = (future.result() or {} for future in asked)
    return [
        WorkerState(
            name=name,
            # "celery.concurrency.prefork:TaskPool" -> "prefork"
            pool=str(info.get("pool", {}).get("implementation", "?")).split(":", 1)[0].rsplit(".", 1)[-1],
            concurrency=int(info.get("pool", {}).get("max-concurrency", 0)),
            queues=sorted(queue["name"] for queue in queues.get(name, [])),
            active=len(active.get(name, [])),
        )
        for name, info in sorted(stats.items())
    ]


def read_fleet(
    app: Any, client: Redis, queues: list[str], timeout_s: float = 1.0, settings: StepperSettings | None = None
) -> FleetState:
    """The whole picture; spend against budgets only when ``settings`` (which declare them) are given."""
    try:
        client.ping()
        depths = queue_depths(app, queues)
    except Exception as exc:  # noqa: BLE001  (any failure to reach Redis or the broker is the answer itself)
        return FleetState(redis_ok=False, error=f"{type(exc).__name__}: {exc}")
    return FleetState(
        redis_ok=True,
        queues=depths,
        workers=worker_states(app, timeout_s),
        breakers=breaker_states(client),
        buckets=rate_buckets(client),
        dead_letters=int(client.zcard(keys.dead_letter_index())),
        spend=budget_uses(client, settings) if settings is not None else [],
    )
