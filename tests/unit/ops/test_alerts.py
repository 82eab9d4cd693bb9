"""Alerts: one FIRING and one RESOLVED per incident and per sink, fleet-wide, in Slack's and Discord's formats."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stepper.celery import app
from stepper.guards.spend import BudgetUse
from stepper.infra import keys
from stepper.ops.alerts import (
    EXHAUSTED_TTL_S,
    AlertMessage,
    AlertSink,
    AlertStore,
    RedisAlertStore,
    alert_state,
    build_sinks,
    check,
    count_exhausted,
    run_checks,
    watch,
)
from stepper.ops.alerts_memory import MemoryAlertStore
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


def fleet(breakers: dict[str, str] | None = None, depth: int = 0, dead_letters: int = 0) -> FleetState:
    levels = {level: 0 for level in PRIORITY_STEPS}
    levels[0] = depth
    return FleetState(redis_ok=True, queues={"chat": levels}, breakers=breakers or {}, dead_letters=dead_letters)


@dataclass
class Checker:
    """One alert store under test, and a check on it: through run_checks() on Redis, check() in memory."""

    store: AlertStore
    client: redis.Redis | None = None
    server: RedisServer | None = None

    def second(self) -> Checker:
        """Another checker on the same state: in memory the same store, on Redis its own connection."""
        if self.server is None:
            return self
        client = self.server.client()
        return Checker(RedisAlertStore(client), client, self.server)

    def run(self, sinks: list[AlertSink], state: FleetState, now: float) -> list[AlertMessage]:
        if self.client is None:
            return check(self.store, state, SETTINGS, sinks, now)
        return run_checks(None, self.client, SETTINGS, sinks, state=state, now=now)


@pytest.fixture(params=["memory", "redis"])
def checker(request: pytest.FixtureRequest) -> Checker:
    """Every alert-state test runs on both stores: in memory (no redis-server) and on the private Redis."""
    if request.param == "memory":
        return Checker(MemoryAlertStore(lambda: NOW))  # checks pass their own now
    client: redis.Redis = request.getfixturevalue("redis_client")
    return Checker(RedisAlertStore(client), client, request.getfixturevalue("redis_server"))


def unreachable_redis() -> redis.Redis:
    return redis.Redis(port=9, retry=Retry(NoBackoff(), 0))  # refused at once, no retries


def posted(server: FakeServer, sink: str) -> list[Request]:
    return [request for request in server.requests if request.path == f"/{sink}/hook"]


def lines(server: FakeServer, sink: str) -> list[str]:
    field = "text" if sink == "slack" else "content"
    return [request.json()[field] for request in posted(server, sink)]


def test_an_open_breaker_fires_once_per_sink_then_resolves_once(
    checker: Checker, server: FakeServer, sinks: list[AlertSink]
) -> None:
    other_checker = checker.second()  # a second checker: on Redis, its own connection
    opened = fleet({"openai": "open", "gemini": "closed"})
    sent: list[AlertMessage] = []
    for step in range(5):
        for one in (checker, other_checker):
            sent += one.run(sinks, opened, NOW + step)
    half_open = fleet({"openai": "half-open", "gemini": "closed"})
    sent += checker.run(sinks, half_open, NOW + 10)

    assert [message.line for message in sent] == ["FIRING: circuit breaker of openai is open"]
    for sink in ("slack", "discord"):
        assert lines(server, sink) == ["FIRING: circuit breaker of openai is open"]

    closed = fleet({"openai": "closed", "gemini": "closed"})
    resolved: list[AlertMessage] = []
    for step in range(3):
        for one in (checker, other_checker):
            resolved += one.run(sinks, closed, NOW + 75 + step)

    assert [message.line for message in resolved] == ["RESOLVED: circuit breaker of openai closed (firing for 1m 15s)"]
    for sink in ("slack", "discord"):
        assert lines(server, sink)[1:] == [resolved[0].line]


def test_checkers_running_at_the_same_moment_send_one_message(
    checker: Checker, server: FakeServer, sinks: list[AlertSink]
) -> None:
    start = threading.Barrier(4)
    sent: list[AlertMessage] = []

    def one_check() -> None:
        start.wait()
        sent.extend(checker.run(sinks, fleet({"cohere": "open"}), NOW))

    threads = [threading.Thread(target=one_check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [message.key for message in sent] == ["breaker_open:cohere"]
    assert len(posted(server, "slack")) == len(posted(server, "discord")) == 1


def test_a_deep_queue_fires_then_resolves(checker: Checker, server: FakeServer, sinks: list[AlertSink]) -> None:
    at_threshold = checker.run(sinks, fleet(depth=100), NOW)
    over = [checker.run(sinks, fleet(depth=150 + n), NOW + n) for n in range(3)]
    drained = checker.run(sinks, fleet(depth=3), NOW + 5)

    assert at_threshold == []
    assert [[message.line for message in messages] for messages in over] == [
        ["FIRING: queue chat has 150 messages waiting (threshold 100)"],
        [],
        [],
    ]
    assert [message.line for message in drained] == ["RESOLVED: queue chat is back under 100 messages (firing for 5s)"]
    assert len(posted(server, "slack")) == len(posted(server, "discord")) == 2


def test_chain_exhausted_rate_fires_on_the_previous_minute(checker: Checker, sinks: list[AlertSink]) -> None:
    for _ in range(10):
        checker.store.add_exhausted(NOW)  # this minute: not read until it is over
    assert checker.store.exhausted(int(NOW // 60)) == 10
    assert checker.run(sinks, fleet(), NOW) == []

    for _ in range(3):
        checker.store.add_exhausted(NOW - 60)  # at the threshold: quiet
    assert checker.run(sinks, fleet(), NOW) == []
    checker.store.add_exhausted(NOW - 60)
    fired = checker.run(sinks, fleet(), NOW)
    assert [(message.status, message.key) for message in fired] == [("firing", "chain_exhausted_rate")]
    assert "4 requests failed on every provider" in fired[0].text

    # The next minute reads this minute's ten.
    assert checker.run(sinks, fleet(), NOW + 60) == []
    quiet = checker.run(sinks, fleet(), NOW + 120)
    assert [(message.status, message.key) for message in quiet] == [("resolved", "chain_exhausted_rate")]


def test_redis_counts_chain_exhausted_per_minute_in_an_expiring_key(redis_client: redis.Redis) -> None:
    minute = int(NOW // 60)
    for _ in range(10):
        count_exhausted(redis_client, now=NOW)
    assert int(redis_client.get(keys.alerts_exhausted(minute)) or 0) == 10
    assert 0 < redis_client.ttl(keys.alerts_exhausted(minute)) <= 180
    redis_client.set(keys.alerts_exhausted(minute - 1), 4)
    assert RedisAlertStore(redis_client).exhausted(minute - 1) == 4


def test_memory_exhausted_counts_run_out_on_its_clock() -> None:
    elapsed_s = [0.0]
    store = MemoryAlertStore(lambda: NOW + elapsed_s[0])
    store.add_exhausted(NOW)
    elapsed_s[0] += EXHAUSTED_TTL_S - 1
    store.add_exhausted(NOW)  # a count keeps the minute another EXHAUSTED_TTL_S, as EXPIRE does
    elapsed_s[0] += EXHAUSTED_TTL_S - 1
    assert store.exhausted(int(NOW // 60)) == 2
    elapsed_s[0] += 1
    assert store.exhausted(int(NOW // 60)) == 0


def test_dead_letters_growth_fires_and_a_checker_right_after_does_not_clear_it(
    checker: Checker, sinks: list[AlertSink]
) -> None:
    assert checker.run(sinks, fleet(dead_letters=2), NOW) == []  # the baseline
    fired = checker.run(sinks, fleet(dead_letters=10), NOW + 30)
    assert [message.line for message in fired] == [
        "FIRING: 8 new dead letters since the previous check (threshold 5); see `stepper dlq`"
    ]
    assert checker.run(sinks, fleet(dead_letters=10), NOW + 31) == []  # same window
    resolved = checker.run(sinks, fleet(dead_letters=10), NOW + 60)
    assert [message.status for message in resolved] == ["resolved"]


def test_redis_alert_state_counts_the_dead_letters_in_their_index(redis_client: redis.Redis) -> None:
    redis_client.zadd(keys.dead_letter_index(), {f"task-{n}": n for n in range(10)})
    assert alert_state(app, redis_client, []).dead_letters == 10


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


def spending(spent: float) -> FleetState:
    use = BudgetUse("provider", "openai", "day", 20.0, spent, "USD", "2023-11-15T00:00:00Z", 3600)
    return FleetState(redis_ok=True, spend=[use])


def test_a_budget_fires_at_80_and_100_percent_and_resolves_when_its_window_resets(
    checker: Checker, sinks: list[AlertSink]
) -> None:
    under = checker.run(sinks, spending(15.9), NOW)
    warned = checker.run(sinks, spending(16.0), NOW + 1)
    spent = checker.run(sinks, spending(20.5), NOW + 2)
    new_day = checker.run(sinks, spending(0.0), NOW + 3)

    assert under == []
    assert [message.line for message in warned] == [
        "FIRING: the daily budget of provider openai (20 USD) is 80% spent (16 USD); it resets at 2023-11-15T00:00:00Z"
    ]
    assert [message.line for message in spent] == [
        "FIRING: the daily budget of provider openai (20 USD) is 102% spent (20.5 USD); "
        "it resets at 2023-11-15T00:00:00Z"
    ]
    assert sorted(message.key for message in new_day) == [
        "budget_100:provider:openai:day",
        "budget_80:provider:openai:day",
    ]
    assert {message.status for message in new_day} == {"resolved"}
