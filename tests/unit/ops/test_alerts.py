"""Alerts: one FIRING and one RESOLVED per incident and per sink, fleet-wide, in Slack's and Discord's formats."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stepper.infra import keys
from stepper.ops.alerts import (
    AlertMessage,
    AlertSink,
    build_sinks,
    count_exhausted,
    run_checks,
    watch,
)
from stepper.ops.fleet import FleetState
from stepper.priorities import PRIORITY_STEPS
from stepper.settings import AlertSettings
from tests.support.fake_http import FakeServer, Fault, Reply, Request, running
from tests.support.redis_server import RedisServer

NOW = 1_700_000_000.0
SETTINGS = AlertSettings(queue_depth_threshold=100, dlq_growth_threshold=5, exhausted_per_minute_threshold=3)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    fake.route("POST", "/slack/hook", lambda request: Reply(200, b"ok"))
    fake.route("POST", "/discord/hook", lambda request: Reply(204, b""))
    yield from running(fake)


@pytest.fixture
def sinks(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> list[AlertSink]:
    monkeypatch.setenv("STEPPER_SLACK_WEBHOOK_URL", f"{server.url}/slack/hook")
    monkeypatch.setenv("STEPPER_DISCORD_WEBHOOK_URL", f"{server.url}/discord/hook")
    found = build_sinks(SETTINGS)
    assert [sink.name for sink in found] == ["slack", "discord"]
    return found


def fleet(breakers: dict[str, str] | None = None, depth: int = 0) -> FleetState:
    levels = {level: 0 for level in PRIORITY_STEPS}
    levels[0] = depth
    return FleetState(redis_ok=True, queues={"chat": levels}, breakers=breakers or {})


def unreachable_redis() -> redis.Redis:
    return redis.Redis(port=9, retry=Retry(NoBackoff(), 0))  # refused at once, no retries


def posted(server: FakeServer, sink: str) -> list[Request]:
    return [request for request in server.requests if request.path == f"/{sink}/hook"]


def lines(server: FakeServer, sink: str) -> list[str]:
    field = "text" if sink == "slack" else "content"
    return [request.json()[field] for request in posted(server, sink)]


def test_an_open_breaker_fires_once_per_sink_then_resolves_once(
    redis_client: redis.Redis, server: FakeServer, sinks: list[AlertSink], redis_server: RedisServer
) -> None:
    other_checker = redis_server.client()  # a second checker: its own connection
    opened = fleet({"openai": "open", "gemini": "closed"})
    sent: list[AlertMessage] = []
    for step in range(5):
        for client in (redis_client, other_checker):
            sent += run_checks(None, client, SETTINGS, sinks, state=opened, now=NOW + step)
    half_open = fleet({"openai": "half-open", "gemini": "closed"})
    sent += run_checks(None, redis_client, SETTINGS, sinks, state=half_open, now=NOW + 10)

    assert [message.line for message in sent] == ["FIRING: circuit breaker of openai is open"]
    for sink in ("slack", "discord"):
        assert lines(server, sink) == ["FIRING: circuit breaker of openai is open"]

    closed = fleet({"openai": "closed", "gemini": "closed"})
    resolved: list[AlertMessage] = []
    for step in range(3):
        for client in (redis_client, other_checker):
            resolved += run_checks(None, client, SETTINGS, sinks, state=closed, now=NOW + 75 + step)

    assert [message.line for message in resolved] == ["RESOLVED: circuit breaker of openai closed (firing for 1m 15s)"]
    for sink in ("slack", "discord"):
        assert lines(server, sink)[1:] == [resolved[0].line]


def test_checkers_running_at_the_same_moment_send_one_message(
    redis_client: redis.Redis, server: FakeServer, sinks: list[AlertSink]
) -> None:
    start = threading.Barrier(4)
    sent: list[AlertMessage] = []

    def check() -> None:
        start.wait()
        sent.extend(run_checks(None, redis_client, SETTINGS, sinks, state=fleet({"cohere": "open"}), now=NOW))

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [message.key for message in sent] == ["breaker_open:cohere"]
    assert len(posted(server, "slack")) == len(posted(server, "discord")) == 1


def test_a_deep_queue_fires_then_resolves(
    redis_client: redis.Redis, server: FakeServer, sinks: list[AlertSink]
) -> None:
    at_threshold = run_checks(None, redis_client, SETTINGS, sinks, state=fleet(depth=100), now=NOW)
    over = [run_checks(None, redis_client, SETTINGS, sinks, state=fleet(depth=150 + n), now=NOW + n) for n in range(3)]
    drained = run_checks(None, redis_client, SETTINGS, sinks, state=fleet(depth=3), now=NOW + 5)

    assert at_threshold == []
    assert [[message.line for message in messages] for messages in over] == [
        ["FIRING: queue chat has 150 messages waiting (threshold 100)"],
        [],
        [],
    ]
    assert [message.line for message in drained] == ["RESOLVED: queue chat is back under 100 messages (firing for 5s)"]
    assert len(posted(server, "slack")) == len(posted(server, "discord")) == 2


def test_chain_exhausted_rate_fires_on_the_previous_minute(redis_client: redis.Redis, sinks: list[AlertSink]) -> None:
    minute = int(NOW // 60)
    for _ in range(10):
        count_exhausted(redis_client, now=NOW)  # this minute: not read until it is over
    assert int(redis_client.get(keys.alerts_exhausted(minute)) or 0) == 10
    assert 0 < redis_client.ttl(keys.alerts_exhausted(minute)) <= 180
    assert run_checks(None, redis_client, SETTINGS, sinks, state=fleet(), now=NOW) == []

    redis_client.set(keys.alerts_exhausted(minute - 1), 3)  # at the threshold: quiet
    assert run_checks(None, redis_client, SETTINGS, sinks, state=fleet(), now=NOW) == []
    redis_client.set(keys.alerts_exhausted(minute - 1), 4)
    fired = run_checks(None, redis_client, SETTINGS, sinks, state=fleet(), now=NOW)
    assert [(message.status, message.key) for message in fired] == [("firing", "chain_exhausted_rate")]
    assert "4 requests failed on every provider" in fired[0].text

    # The next minute reads this minute's ten.
    assert run_checks(None, redis_client, SETTINGS, sinks, state=fleet(), now=NOW + 60) == []
    quiet = run_checks(None, redis_client, SETTINGS, sinks, state=fleet(), now=NOW + 120)
    assert [(message.status, message.key) for message in quiet] == [("resolved", "chain_exhausted_rate")]


def test_dead_letters_growth_fires_and_a_checker_right_after_does_not_clear_it(
    redis_client: redis.Redis, sinks: list[AlertSink]
) -> None:
    def dead_letters(count: int) -> None:
        redis_client.zadd(keys.dead_letter_index(), {f"task-{n}": n for n in range(count)})

    dead_letters(2)
    assert run_checks(None, redis_client, SETTINGS, sinks, state=fleet(), now=NOW) == []  # the baseline
    dead_letters(10)
    fired = run_checks(None, redis_client, SETTINGS, sinks, state=fleet(), now=NOW + 30)
    assert [message.line for message in fired] == [
        "FIRING: 8 new dead letters since the previous check (threshold 5); see `stepper dlq`"
    ]
    assert run_checks(None, redis_client, SETTINGS, sinks, state=fleet(), now=NOW + 31) == []  # same window
    resolved = run_checks(None, redis_client, SETTINGS, sinks, state=fleet(), now=NOW + 60)
    assert [message.status for message in resolved] == ["resolved"]


def test_slack_and_discord_bodies_follow_their_formats(
    redis_client: redis.Redis, server: FakeServer, sinks: list[AlertSink]
) -> None:
    run_checks(None, redis_client, SETTINGS, sinks, state=fleet({"<!channel>": "open"}), now=NOW)
    run_checks(None, redis_client, SETTINGS, sinks, state=fleet(), now=NOW + 1)

    firing, resolved = (request.json() for request in posted(server, "slack"))
    assert firing["text"] == "FIRING: circuit breaker of <!channel> is open"
    assert firing["blocks"] == [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": ":red_circle: *FIRING* circuit breaker of &lt;!channel&gt; is open"},
        }
    ]
    assert resolved["blocks"][0]["text"]["text"].startswith(":large_green_circle: *RESOLVED* ")

    firing, resolved = (request.json() for request in posted(server, "discord"))
    assert firing["content"] == "FIRING: circuit breaker of <!channel> is open"
    assert firing["embeds"] == [
        {
            "title": "FIRING: breaker_open:<!channel>",
            "description": "circuit breaker of <!channel> is open",
            "color": 0xE01E5A,
        }
    ]
    assert firing["allowed_mentions"] == {"parse": []}
    assert resolved["embeds"][0]["color"] == 0x2EB67D
    assert all(request.headers["content-type"] == "application/json" for request in server.requests)


def test_a_failing_sink_is_logged_not_raised_and_the_other_still_gets_it(
    redis_client: redis.Redis, server: FakeServer, sinks: list[AlertSink], caplog: pytest.LogCaptureFixture
) -> None:
    server.inject(Fault(status=500, body={"error": "down"}))
    with caplog.at_level(logging.WARNING, logger="stepper.ops.alerts"):
        sent = run_checks(None, redis_client, SETTINGS, sinks, state=fleet({"openai": "open"}), now=NOW)

    assert [message.status for message in sent] == ["firing"]
    assert len(posted(server, "slack")) == len(posted(server, "discord")) == 1  # the 500 was Slack's
    assert "slack answered 500" in caplog.text
    assert server.url not in caplog.text  # a webhook URL is a secret


def test_an_unreachable_sink_is_logged_without_its_url(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEPPER_SLACK_WEBHOOK_URL", "http://127.0.0.1:9/services/T000/B000/secret-token")
    monkeypatch.delenv("STEPPER_DISCORD_WEBHOOK_URL", raising=False)
    sinks = build_sinks(AlertSettings(timeout_s=2))
    with caplog.at_level(logging.WARNING, logger="stepper.ops.alerts"):
        sent = run_checks(None, redis_client, SETTINGS, sinks, state=fleet({"openai": "open"}), now=NOW)

    assert [message.status for message in sent] == ["firing"]
    assert "ConnectionError" in caplog.text
    assert "secret-token" not in caplog.text


def test_no_webhook_configured_means_no_sinks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEPPER_SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("STEPPER_DISCORD_WEBHOOK_URL", raising=False)
    assert build_sinks(AlertSettings()) == []


def test_an_unreachable_redis_sends_nothing(sinks: list[AlertSink], server: FakeServer) -> None:
    down = FleetState(redis_ok=False, error="ConnectionError: refused")
    assert run_checks(None, unreachable_redis(), SETTINGS, sinks, state=down, now=NOW) == []
    assert server.requests == []


def test_watch_reports_each_message_and_survives_a_redis_outage(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    app = SimpleNamespace(conf=SimpleNamespace(task_queues=[]))  # no queues: only Redis counters matter here
    minute = int(time.time() // 60)
    for counted in (minute - 1, minute):  # both: the minute may turn during the test
        redis_client.set(keys.alerts_exhausted(counted), 50)
    seen: list[str] = []
    watch(0, app=app, client=redis_client, settings=SETTINGS, sinks=[], on_message=lambda m: seen.append(m.line),
          passes=2)  # fmt: skip
    assert [line.split(" requests")[0] for line in seen] == ["FIRING: 50"]

    with caplog.at_level(logging.WARNING, logger="stepper.ops.alerts"):
        watch(0, app=app, client=unreachable_redis(), settings=SETTINGS, sinks=[], passes=1)
    assert "Redis unreachable" in caplog.text
