"""Faults that must not cost a task: a flaky provider, a provider going down and coming back, bad messages."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from kombu import Connection

from tests.integration.conftest import Fleet
from tests.support.providers import calls, tries

HELLO = {"messages": [{"role": "user", "content": "again"}], "cache": "bypass"}


def test_a_provider_failing_thirty_percent_loses_no_task(start_fleet: Callable[..., Fleet]) -> None:
    fleet = start_fleet(
        {
            "stepper_providers": {
                "flaky": {"class": "tests.support.providers:RandomlyFailingChat", "options": {"failure_rate": 0.3}},
            },
            "stepper_chains": {"chat": ["flaky:flaky-model", "counting:backup-model"]},
            "stepper_retry": {"attempts_per_provider": 2, "backoff_base_s": 0.01, "backoff_cap_s": 0.05},
            "stepper_breaker": {"fail_max": 1000, "reset_timeout_s": 300},
        },
        name="flaky",
        concurrency=8,
    )
    results = [fleet.app.send_task("stepper.chat", kwargs=HELLO) for _ in range(100)]
    answers = [result.get(timeout=120) for result in results]
    assert all(answer["output"]["message"]["content"].endswith("again") for answer in answers)
    failed_tries = tries(fleet.redis, "flaky") - calls(fleet.redis, "flaky")
    assert failed_tries > 0  # the fault really happened...
    assert calls(fleet.redis, "flaky") + calls(fleet.redis, "counting") == 100  # ...and each task was answered once


def test_after_an_outage_one_probe_goes_to_the_provider_fleet_wide(start_fleet: Callable[..., Fleet]) -> None:
    settings = {
        "stepper_providers": {
            "switch": {"class": "tests.support.providers:SwitchableChat", "options": {"delay_s": 1.5}},
        },
        "stepper_chains": {"chat": ["switch:switch-model", "counting:backup-model"]},
        "stepper_retry": {"attempts_per_provider": 1},
        "stepper_breaker": {"fail_max": 3, "reset_timeout_s": 2},
    }
    first = start_fleet(settings, name="probe-a", concurrency=8)
    second = start_fleet(settings, name="probe-b", concurrency=8, database=int(first.url.rsplit("/", 1)[1]))
    assert first.url == second.url  # two workers on one broker: one fleet
    first.redis.set("test:down:switch", b"1")
    for _ in range(3):  # three failures open the breaker
        first.app.send_task("stepper.chat", kwargs=HELLO).get(timeout=30)
    assert first.redis.get("stepper:{switch}:breaker:pybreaker:state") == b"open"

    first.redis.delete("test:down:switch")  # the provider recovers...
    time.sleep(2.5)  # ...and the reset timeout passes
    before = tries(first.redis, "switch")
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: first.app.send_task("stepper.chat", kwargs=HELLO).get(timeout=60), range(16)))
    assert len(answers) == 16
    assert tries(first.redis, "switch") - before == 1  # exactly one probe, while 15 others went to the backup
    assert sum(answer["provider"] == "switch" for answer in answers) == 1
    assert first.redis.get("stepper:{switch}:breaker:pybreaker:state") == b"closed"


def test_malformed_messages_do_not_stop_the_worker(counting_fleet: Fleet) -> None:
    messages = [
        (b"\x00\xffnot json at all", "application/json", "stepper.chat"),
        (b'{"no": "protocol"}', "application/json", "stepper.chat"),  # not [args, kwargs, embed]: crashed Celery
        (b"<xml/>", "application/xml", "stepper.chat"),
        (b"[[], {}, {}]", "application/json", "no.such.task"),
    ]
    with Connection(counting_fleet.url) as connection:
        channel = connection.default_channel
        for body, content_type, task in messages:
            message = channel.prepare_message(
                body, content_type=content_type, content_encoding="utf-8", headers={"task": task, "id": "bad"}
            )
            channel.basic_publish(message, exchange="", routing_key="chat")
    answer = counting_fleet.app.send_task("stepper.chat", kwargs=HELLO).get(timeout=30)
    assert answer["output"]["message"]["content"].endswith("again")
    assert counting_fleet.worker.process.poll() is None
