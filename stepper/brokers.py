"""Which broker carries the messages, and what that changes: URL schemes, Sentinel URLs, queue declarations.

stepper runs on two brokers (see README, "Which broker when"):

- **Redis** (``redis://``, ``rediss://``, ``sentinel://``): kombu's Redis transport. Priorities are emulated with
  one list per level, unacknowledged messages wait in kombu's ``unacked`` hash for the visibility timeout, and
  stepper's recovery sweep, in-flight journal and watchdog make up for what Redis does not do.
- **RabbitMQ** (``amqp://``, ``amqps://``, ``pyamqp://``): durable queues, publisher confirms, a dead-letter
  exchange; an unacknowledged message returns to its queue as soon as its channel closes, so stepper's Redis
  recovery machinery stays off. Queues are classic with ``x-max-priority`` (ten levels), or quorum
  (``stepper_rabbitmq["queue_type"] = "quorum"``: replicated, with a delivery limit; see stepper.priorities for
  what becomes of priorities there).

A Sentinel URL names its sentinels and the master (kombu's form plus the master's name in the query)::

    sentinel://:password@10.0.0.1:26379;sentinel://10.0.0.2:26379;sentinel://10.0.0.3:26379/0?master_name=mymaster

kombu and Celery's result backend take the master's name as a transport option: :func:`split_sentinel_url`
moves it there. The fleet's state reaches the master through redis-py's Sentinel (stepper.infra.connections).
Redis Cluster is not a broker: kombu's Redis transport does not support it (the state can live on one, see
README "Redis Cluster for the state").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from kombu import Exchange, Queue

from stepper.errors import ConfigError

BrokerKind = Literal["redis", "amqp"]

REDIS_SCHEMES = frozenset({"redis", "rediss", "sentinel"})
AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})

#: Celery's ``broker_transport`` for Redis broker URLs: kombu's Redis transport, reusing its redis-py clients
#: (stepper.infra.redis_transport). ``rediss://`` stays on kombu's own: kombu gives a ``rediss`` URL its
#: default TLS options only when the URL's scheme names the transport.
REDIS_TRANSPORTS = {
    "redis": "stepper.infra.redis_transport:Transport",
    "sentinel": "stepper.infra.redis_transport:SentinelTransport",
}

#: The exchange RabbitMQ dead-letters to (a rejected message, one over the quorum queues' delivery limit), and
#: the durable queue bound to it that the workers' housekeeping drains into stepper's dead-letter store.
DEAD_LETTER_EXCHANGE = "stepper.dead-letters"
DEAD_LETTER_QUEUE = "stepper.dead-letters"

#: ``x-max-priority`` of stepper's classic queues: ten levels, as on Redis (stepper.priorities maps them).
MAX_PRIORITY = 9


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def broker_kind(url: str) -> BrokerKind:
    """``"redis"`` or ``"amqp"`` for a broker URL; ConfigError for any other scheme."""
    scheme = scheme_of(url)
    if scheme in REDIS_SCHEMES:
        return "redis"
    if scheme in AMQP_SCHEMES:
        return "amqp"
    raise ConfigError(
        f"broker URL scheme {scheme or '(none)'!r} is not supported: use redis://, rediss://, sentinel:// "
        "(Redis, Redis Sentinel) or amqp:// (RabbitMQ)"
    )


def is_redis_url(url: str) -> bool:
    return scheme_of(url) in REDIS_SCHEMES


@dataclass(frozen=True)
class SentinelUrl:
    """A ``sentinel://`` URL taken apart: the sentinels' addresses, the master's name, database and password."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    password: str | None = None

    @property
    def kombu_url(self) -> str:
        """The same URL as kombu and Celery read it (the master's name goes in the transport options)."""
        auth = f":{self.password}@" if self.password else ""
        first, *rest = (f"sentinel://{auth}{host}:{port}" for host, port in self.sentinels)
        return ";".join([first, *rest]) + f"/{self.db}"


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse ``sentinel://[:password@]host:port[;sentinel://host:port...][/db]?master_name=NAME``."""
    body, _, query = url.partition("?")
    master = parse_qs(query).get("master_name", [""])[0]
    if not master:
        raise ConfigError(
            f"the Sentinel URL {_without_password(url)!r} names no master: add ?master_name=<the name in "
            "sentinel.conf's `sentinel monitor` line> at its end"
        )
    sentinels: list[tuple[str, int]] = []
    db, password = 0, None
    for part in body.split(";"):
        where = urlsplit(part.strip())
        if where.scheme != "sentinel" or not where.hostname:
            raise ConfigError(f"{_without_password(part)!r} is not a sentinel://host:port address")
        sentinels.append((where.hostname, where.port or 26379))
        password = where.password or password
        if where.path.strip("/"):
            try:
                db = int(where.path.strip("/"))
            except ValueError:
                raise ConfigError(f"the database in {_without_password(part)!r} must be a number") from None
    return SentinelUrl(tuple(sentinels), master, db, password)


def split_sentinel_url(url: str) -> tuple[str, dict[str, Any]]:
    """A URL for kombu or Celery and the transport options it needs: a Sentinel URL loses its query and gives
    ``master_name``; any other URL is returned as it is, with no options."""
    if scheme_of(url) != "sentinel":
        return url, {}
    parsed = parse_sentinel_url(url)
    return parsed.kombu_url, {"master_name": parsed.master_name}


def task_queue(name: str, broker: BrokerKind, rabbitmq: Any) -> Queue:
    """The declaration of one of stepper's queues on ``broker``; ``rabbitmq`` is ``stepper_rabbitmq``
    (:class:`stepper.settings.RabbitMQSettings`)."""
    if broker == "redis":
        return Queue(name, routing_key=name)
    arguments: dict[str, Any] = {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}
    if rabbitmq.queue_type == "quorum":
        arguments |= {"x-queue-type": "quorum", "x-delivery-limit": rabbitmq.delivery_limit}
    else:
        arguments["x-max-priority"] = MAX_PRIORITY
    # Topic exchanges: Celery's native delayed delivery (quorum queues) routes countdowns through them.
    exchange = Exchange(name, type="topic", durable=True)
    return Queue(name, exchange, routing_key=name, durable=True, queue_arguments=arguments)


def dead_letter_queue() -> Queue:
    """RabbitMQ's dead letters of every stepper queue, waiting for the housekeeping to record them."""
    return Queue(DEAD_LETTER_QUEUE, Exchange(DEAD_LETTER_EXCHANGE, type="fanout", durable=True), durable=True)


def _without_password(url: str) -> str:
    where = urlsplit(url)
    return url.replace(f":{where.password}@", ":***@") if where.password else url
