"""The three connections (broker, result backend, the fleet's state), Sentinel URLs and RabbitMQ's queues."""

from __future__ import annotations

from typing import Any

import pytest

from stepper.brokers import DEAD_LETTER_EXCHANGE, broker_kind, parse_sentinel_url, split_sentinel_url
from stepper.celery import create_app
from stepper.config import load_config
from stepper.errors import ConfigError
from stepper.priorities import PRIORITIES, broker_priority, level_of

ABSENT = {"CELERY_CONFIG_MODULE": "stepper_tests_no_such_config_module"}
SENTINELS = "sentinel://:pw@10.0.0.1:26379;sentinel://10.0.0.2:26380/3?master_name=state"


def config(**environ: str) -> dict[str, Any]:
    return load_config({**ABSENT, **environ})


def test_one_redis_url_means_all_three() -> None:
    loaded = config(STEPPER_REDIS_URL="redis://10.0.0.9:6379/2")
    assert (loaded["broker_url"], loaded["result_backend"], loaded["stepper_state_url"]) == (
        "redis://10.0.0.9:6379/2",
    ) * 3


def test_each_connection_is_set_alone_and_wins_over_the_one_url() -> None:
    loaded = config(
        STEPPER_REDIS_URL="redis://10.0.0.9:6379/2",
        STEPPER_BROKER_URL="amqp://user:pw@rabbit:5672/stepper",
        STEPPER_RESULT_BACKEND="redis://results:6379/0",
        STEPPER_STATE_REDIS_URL="redis://state:6379/0",
    )
    assert loaded["broker_url"] == "amqp://user:pw@rabbit:5672/stepper"
    assert loaded["result_backend"] == "redis://results:6379/0"
    assert loaded["stepper_state_url"] == "redis://state:6379/0"
    assert loaded["broker_transport_options"]["confirm_publish"] is True


def test_the_state_falls_back_to_the_result_backends_redis_behind_rabbitmq() -> None:
    loaded = config(STEPPER_BROKER_URL="amqp://rabbit//", STEPPER_RESULT_BACKEND="redis://results:6379/1")
    assert loaded["stepper_state_url"] == "redis://results:6379/1"


def test_rabbitmq_without_any_redis_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match="STEPPER_STATE_REDIS_URL"):
        config(STEPPER_BROKER_URL="amqp://rabbit//", STEPPER_RESULT_BACKEND="rpc://")


def test_an_unknown_broker_scheme_is_refused() -> None:
    with pytest.raises(ConfigError, match="amqp://"):
        config(STEPPER_BROKER_URL="sqs://queue")
    assert broker_kind("pyamqp://rabbit//") == "amqp"


def test_a_sentinel_url_gives_kombu_its_form_and_the_master_name() -> None:
    loaded = config(STEPPER_REDIS_URL=SENTINELS)
    assert loaded["broker_url"] == "sentinel://:pw@10.0.0.1:26379;sentinel://:pw@10.0.0.2:26380/3"
    assert loaded["broker_transport_options"]["master_name"] == "state"
    assert loaded["result_backend_transport_options"]["master_name"] == "state"
    assert loaded["stepper_state_url"] == SENTINELS  # redis-py's Sentinel reads the whole URL


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        ("redis://10.0.0.9:6379/2", "stepper.infra.redis_transport:Transport"),
        (SENTINELS, "stepper.infra.redis_transport:SentinelTransport"),
        ("rediss://10.0.0.9:6380/2", None),  # kombu's own: it gives a rediss URL its default TLS options
        ("amqp://rabbit//", None),
    ],
)
def test_redis_brokers_get_the_transport_that_reuses_clients(url: str, transport: str | None) -> None:
    assert config(STEPPER_BROKER_URL=url, STEPPER_STATE_REDIS_URL="redis://state:6379/0")["broker_transport"] == (
        transport
    )


def test_sentinel_url_parts() -> None:
    parsed = parse_sentinel_url(SENTINELS)
    assert parsed.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380))
    assert (parsed.master_name, parsed.db, parsed.password) == ("state", 3, "pw")
    assert split_sentinel_url("redis://x:6379/0") == ("redis://x:6379/0", {})


def test_a_sentinel_url_without_a_master_name_says_how_to_add_it_and_hides_the_password() -> None:
    with pytest.raises(ConfigError, match=r"\?master_name=") as raised:
        parse_sentinel_url("sentinel://:secret@10.0.0.1:26379/0")
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_rabbitmq_queues_are_durable_and_dead_letter_to_stepper(queue_type: str) -> None:
    loaded = {**config(STEPPER_BROKER_URL="amqp://rabbit//", STEPPER_STATE_REDIS_URL="redis://state:6379/0")}
    loaded["stepper_rabbitmq"] = {"queue_type": queue_type}
    queues = create_app(loaded).conf.task_queues
    assert {queue.name for queue in queues} >= {"chat", "callbacks"}
    for queue in queues:
        assert queue.durable
        assert queue.exchange.type == "topic"  # Celery's native delayed delivery needs topic exchanges
        assert queue.queue_arguments["x-dead-letter-exchange"] == DEAD_LETTER_EXCHANGE
        if queue_type == "quorum":
            assert queue.queue_arguments["x-queue-type"] == "quorum"
            assert queue.queue_arguments["x-delivery-limit"] == 10
        else:
            assert queue.queue_arguments["x-max-priority"] == 9


def test_priority_levels_keep_their_meaning_on_rabbitmq() -> None:
    sent = {name: broker_priority(level, "amqp") for name, level in PRIORITIES.items()}
    assert sent["interactive"] > sent["normal"] > sent["batch"]  # RabbitMQ delivers higher numbers first
    assert all(level_of(broker_priority(level, "amqp"), "amqp") == level for level in range(10))
    assert all(broker_priority(level, "redis") == level for level in range(10))


def test_the_queue_type_is_set_from_the_environment_and_checked() -> None:
    loaded = config(STEPPER_BROKER_URL="amqp://rabbit//", STEPPER_STATE_REDIS_URL="redis://state:6379/0",
                    STEPPER_RABBITMQ_QUEUE_TYPE="quorum")  # fmt: skip
    assert create_app(loaded).native_delays
    with pytest.raises(ConfigError, match="queue_type"):
        create_app({**loaded, "stepper_rabbitmq": {"queue_type": "stream"}})
