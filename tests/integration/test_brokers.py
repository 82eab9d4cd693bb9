"""The broker matrix: the task contract, priorities, retries with countdown, revoke, dead letters, recovery and a
chaos scenario, each on Redis and on RabbitMQ, through real servers and real workers (few trials: ``make chaos``
runs many). RabbitMQ is a private node of the test session (tests.support.rabbitmq_server)."""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from celery import states
from kombu import Connection

from stepper.errors import ChainExhausted, InvalidRequest
from stepper.infra import delayed
from stepper.ops.deadletters import DeadLetterStore
from stepper.ops.fleet import ALL_LEVELS, queue_depths, rabbitmq_queue_depths
from stepper.priorities import PRIORITIES
from stepper.samples import sample_requests
from stepper.settings import DeadLetterSettings
from stepper.workers.rabbitmq_dead_letters import ERROR_TYPE
from tests.integration.conftest import BROKERS, COUNTING_CHAINS, Fleet
from tests.support.providers import POISON, calls, journal, journal_settings, run_order, tries
from tests.support.waiting import wait_until
from tests.support.workers import start_worker

BACKLOG = 6


def chat(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture(scope="module", params=BROKERS)
def contract_fleet(request: pytest.FixtureRequest, start_fleet: Callable[..., Fleet]) -> Fleet:
    """Counting providers on every chain, a failing one for report, on each broker."""
    settings = {
        "stepper_chains": {**COUNTING_CHAINS, "report": ["failing:down"]},
        "stepper_retry": {"task_max_retries": 0},  # a failure is final at once
    }
    return start_fleet(settings, broker=request.param, name=f"contract-{request.param}")


@pytest.fixture(scope="module", params=BROKERS)
def slow_fleet(request: pytest.FixtureRequest, start_fleet: Callable[..., Fleet]) -> Fleet:
    """One slot and a slow chat provider: messages wait in the queue, in the order the broker gives them."""
    settings = {"stepper_chains": {"chat": ["slow:slow-model"]}}
    return start_fleet(settings, broker=request.param, name=f"slow-{request.param}", concurrency=1, queues=["chat"])


def test_each_family_runs_and_a_bad_request_fails_before_any_provider(contract_fleet: Fleet) -> None:
    fleet = contract_fleet
    before = calls(fleet.redis, "counting")
    kinds = [kind for kind in sample_requests() if kind != "report"]
    results = {kind: fleet.app.send_task(f"stepper.{kind}", kwargs=sample_requests()[kind]) for kind in kinds}
    for kind, result in results.items():
        answer = result.get(timeout=30)
        assert answer["provider"] == "counting", kind
    assert calls(fleet.redis, "counting") == before + len(kinds)

    with pytest.raises(InvalidRequest):
        fleet.app.send_task("stepper.chat", kwargs={"messages": []}).get(timeout=30)
    assert calls(fleet.redis, "counting") == before + len(kinds)


def test_a_final_failure_is_dead_lettered(contract_fleet: Fleet) -> None:
    result = contract_fleet.app.send_task("stepper.report", kwargs=sample_requests()["report"])
    with pytest.raises(ChainExhausted):
        result.get(timeout=60)
    store = DeadLetterStore(contract_fleet.redis, DeadLetterSettings())
    entry = next(entry for entry in store.entries() if entry.task_id == result.id)
    assert (entry.kind, entry.error.type) == ("report", "ChainExhausted")


@pytest.mark.parametrize("contract_fleet", ["rabbitmq"], indirect=True)  # Redis has no dead-letter exchange
def test_a_message_rabbitmq_dead_letters_lands_in_the_store_with_its_reason(contract_fleet: Fleet) -> None:
    """A malformed message is rejected by the worker; on RabbitMQ that dead-letters it into stepper's store."""
    assert contract_fleet.broker_url.startswith("amqp")
    with Connection(contract_fleet.broker_url) as connection:
        producer = connection.Producer()
        producer.publish(
            b'{"no": "protocol"}',  # not [args, kwargs, embed]: the worker rejects it
            exchange="chat",
            routing_key="chat",
            content_type="application/json",
            content_encoding="utf-8",
            headers={"task": "stepper.chat", "id": "malformed-1"},
        )
    store = DeadLetterStore(contract_fleet.redis, DeadLetterSettings())
    wait_until(lambda: any(entry.task_id == "malformed-1" for entry in store.entries()))
    entry = next(entry for entry in store.entries() if entry.task_id == "malformed-1")
    assert entry.error.type == ERROR_TYPE
    assert "rejected" in entry.error.message and "'chat'" in entry.error.message


def test_interactive_overtakes_a_batch_backlog(slow_fleet: Fleet) -> None:
    fleet = slow_fleet
    fleet.redis.delete("test:order")
    backlog = [fleet.app.send_task("stepper.chat", kwargs=chat(f"batch-{n}"), priority="batch") for n in range(BACKLOG)]
    urgent = fleet.app.send_task("stepper.chat", kwargs=chat("interactive"), priority="interactive")
    for result in [urgent, *backlog]:
        result.get(timeout=60)
    order = run_order(fleet.redis)
    # At most the task running and the one reserved (prefetch 1) when it arrived go first.
    assert order.index("interactive") <= 2, order
    assert [label for label in order if label != "interactive"] == [f"batch-{n}" for n in range(BACKLOG)]


def test_a_task_revoked_while_queued_never_runs(slow_fleet: Fleet) -> None:
    fleet = slow_fleet
    fleet.redis.delete("test:order")
    running = [fleet.app.send_task("stepper.chat", kwargs=chat(f"ahead-{n}")) for n in range(3)]
    doomed = fleet.app.send_task("stepper.chat", kwargs=chat("revoked"))
    doomed.revoke()
    for result in running:
        result.get(timeout=60)
    wait_until(lambda: doomed.state == states.REVOKED)
    assert "revoked" not in run_order(fleet.redis)


@pytest.mark.parametrize("broker", [*BROKERS, "rabbitmq-quorum"])
def test_a_broker_retry_with_countdown_completes(broker: str, start_fleet: Callable[..., Fleet]) -> None:
    """The provider is down for a moment: the task goes back to the broker with a countdown and then succeeds
    (on quorum queues the countdown is held by RabbitMQ: Celery's native delayed delivery)."""
    settings = {
        "stepper_providers": {"switch": {"class": "tests.support.providers:SwitchableChat"}},
        "stepper_chains": {"chat": ["switch:m"]},
        "stepper_retry": {"attempts_per_provider": 1, "backoff_base_s": 1.0, "task_countdown_cap_s": 2.0},
    }
    fleet = start_fleet(settings, broker=broker, name=f"retry-{broker}", queues=["chat"])
    fleet.redis.set("test:down:switch", 1, px=1500)
    answer = fleet.app.send_task("stepper.chat", kwargs=chat("later")).get(timeout=60)
    assert answer["provider"] == "switch"
    assert tries(fleet.redis, "switch") >= 2  # failed, went back with a countdown, then answered


@pytest.mark.parametrize("broker", BROKERS)
def test_a_provider_failing_thirty_percent_loses_no_task(broker: str, start_fleet: Callable[..., Fleet]) -> None:
    settings = {
        "stepper_providers": {
            "flaky": {"class": "tests.support.providers:RandomlyFailingChat", "options": {"failure_rate": 0.3}}
        },
        "stepper_chains": {"chat": ["flaky:m", "counting:m"]},
    }
    fleet = start_fleet(settings, broker=broker, name=f"chaos-{broker}", concurrency=8, queues=["chat"])
    results = [fleet.app.send_task("stepper.chat", kwargs=chat(f"job {n}")) for n in range(40)]
    assert all(result.get(timeout=60)["provider"] in {"flaky", "counting"} for result in results)
    assert calls(fleet.redis, "flaky") + calls(fleet.redis, "counting") == 40  # each task answered once


@pytest.mark.parametrize("broker", BROKERS)
def test_messages_of_a_sigkilled_worker_run_on_another(
    broker: str, start_fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    """On Redis stepper's lease sweep brings them back; on RabbitMQ the broker does when the channel closes."""
    path = tmp_path / "journal"
    settings = journal_settings(path, 0.5, {"lease_s": 2.0})
    fleet = start_fleet(settings, broker=broker, name=f"doomed-{broker}", concurrency=2, queues=["chat"])
    results = [fleet.app.send_task("stepper.chat", kwargs=chat(f"job {n}")) for n in range(6)]
    wait_until(lambda: len(journal(path, "start")) >= 2)
    os.kill(fleet.worker.process.pid, signal.SIGKILL)  # the whole worker, mid-call: no ack, no goodbye
    fleet.worker.process.wait()
    survivor = start_worker(
        fleet.url,
        fleet.worker.config_dir / "survivor",
        {**settings, "stepper_rabbitmq": fleet.app.conf.stepper_rabbitmq or {}},
        name="survivor",
        queues=["chat"],
        env={"STEPPER_BROKER_URL": fleet.broker_url},
    )
    try:
        assert len([result.get(timeout=60) for result in results]) == 6
        assert Counter(journal(path, "finish")) == Counter(f"job {n}" for n in range(6))  # each finished once
    finally:
        survivor.stop()


def test_a_message_over_the_quorum_delivery_limit_is_dead_lettered_by_rabbitmq(
    start_fleet: Callable[..., Fleet],
) -> None:
    """Its pool process dies on each run; RabbitMQ stops redelivering after the delivery limit (below stepper's
    own max_deliveries here, to see the broker's backstop) and stepper records the dead letter with the reason."""
    fleet = start_fleet(
        {
            "stepper_providers": {"killing": {"class": "tests.support.providers:KillingChat"}},
            "stepper_chains": {"chat": ["killing:m"]},
            "stepper_recovery": {"max_deliveries": 5},
            "stepper_rabbitmq": {"delivery_limit": 1},
        },
        broker="rabbitmq-quorum",
        name="delivery-limit",
        pool="prefork",
        concurrency=1,
        queues=["chat"],
    )
    poison = fleet.app.send_task("stepper.chat", kwargs=chat(f"a {POISON} pill"))
    store = DeadLetterStore(fleet.redis, DeadLetterSettings())
    wait_until(lambda: any(entry.task_id == poison.id for entry in store.entries()), timeout_s=90)
    entry = next(entry for entry in store.entries() if entry.task_id == poison.id)
    assert entry.error.type == ERROR_TYPE
    assert "delivery_limit" in entry.error.message, entry.error.message
    assert entry.request["messages"][0]["content"] == f"a {POISON} pill"
    assert calls(fleet.redis, "killing") == 2  # the first delivery and the one the limit allows
    healthy = fleet.app.send_task("stepper.chat", kwargs=chat("fine"))
    assert healthy.get(timeout=60)["provider"] == "killing"


def test_queue_depth_is_read_from_the_broker(slow_fleet: Fleet) -> None:
    """What `stepper status`, the metrics and the alerts show: messages waiting on a queue nobody consumes here."""
    queued = [slow_fleet.app.send_task("stepper.ocr", kwargs=sample_requests()["ocr"]) for _ in range(3)]
    depths = queue_depths(slow_fleet.app, ["ocr"])["ocr"]
    assert sum(depths.values()) == 3
    if slow_fleet.broker_url.startswith("amqp"):
        assert depths == {ALL_LEVELS: 3}  # RabbitMQ does not count by priority
    else:
        assert depths[PRIORITIES["normal"]] == 3
    for result in queued:
        result.revoke()


def test_a_countdown_on_quorum_queues_waits_in_rabbitmq_not_in_redis(start_fleet: Callable[..., Fleet]) -> None:
    """Celery's native delayed delivery: the message waits in RabbitMQ's ``celery_delayed_*`` queues (declared by
    the producer too, should it send first), stepper's Redis delayed store stays empty, and the task runs when due."""
    fleet = start_fleet(
        {"stepper_chains": COUNTING_CHAINS}, broker="rabbitmq-quorum", name="countdown", queues=["chat"]
    )
    result = fleet.app.send_task("stepper.chat", kwargs=chat("later"), countdown=3)
    waiting = rabbitmq_queue_depths(fleet.app, [f"celery_delayed_{level}" for level in range(28)])
    assert sum(waiting.values()) == 1, waiting
    assert delayed.pending(fleet.redis) == 0
    assert result.get(timeout=60)["provider"] == "counting"
