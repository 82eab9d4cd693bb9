"""Operational alerts: a few fleet conditions, sent to Slack and Discord once when they fire and once when they clear.

Each check evaluates the conditions and compares them with the alerts already firing, kept fleet-wide in one
Redis hash. Taking an alert is ``HSETNX`` and clearing it is ``HDEL``: whichever checker wins the write sends
the message, so several checkers running at once still send one FIRING and one RESOLVED per incident, and
nothing in between however long it lasts. A sink that fails is logged (without its URL, which is a secret)
and never raised: the alert stays taken, so a lost message is not resent on every later check.

Conditions: ``breaker_open`` (a provider's breaker is open or half-open), ``queue_depth`` (a queue's messages
over the threshold), ``dead_letters_growth`` (more new dead letters than the threshold since the previous check),
``chain_exhausted_rate`` (more ChainExhausted failures than the threshold in the previous full minute,
counted by the workers with :func:`count_exhausted`), and ``budget_80`` / ``budget_100`` (a provider, model or
gateway key has spent 80 % or all of a daily or monthly budget; resolved when its window resets). When Redis
is unreachable a check sends nothing: the state that deduplicates alerts lives there.

:class:`AlertStore` is that state's interface and :class:`RedisAlertStore` the fleet's;
:class:`~stepper.ops.alerts_memory.MemoryAlertStore` is its twin in one process's memory, for tests without a Redis.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import redis
from redis import Redis

from stepper.guards.spend import BudgetUse, budget_uses
from stepper.infra import keys, lua
from stepper.infra.connections import as_text
from stepper.ops.fleet import FleetState, breaker_states, queue_depths
from stepper.secrets import resolve_secret
from stepper.settings import AlertSettings, StepperSettings

log = logging.getLogger(__name__)

# State in Redis (keys in stepper.infra.keys): the alerts firing now (hash: alert key -> JSON {"summary",
# "recovery", "since"}), the dead-letter count at the previous check (hash {"count", "at", "growth"}), and
# ChainExhausted failures per minute (a counter kept EXHAUSTED_TTL_S seconds).
EXHAUSTED_TTL_S = 180
OPEN_BREAKER_STATES = ("open", "half-open")
#: Shares of a budget at which its alert fires: a warning, then spent.
BUDGET_ALERT_SHARES = (0.8, 1.0)
#: Slack's section text and Discord's message content both have limits; alert texts stay well below.
MAX_TEXT_CHARS = 1900


@dataclass(frozen=True)
class Alert:
    """One condition that holds now. ``key`` names the incident (``breaker_open:openai``)."""

    key: str
    summary: str
    recovery: str


@dataclass(frozen=True)
class AlertMessage:
    status: Literal["firing", "resolved"]
    key: str
    text: str

    @property
    def line(self) -> str:
        return f"{self.status.upper()}: {self.text}"


class AlertSink(Protocol):
    name: str

    def send(self, message: AlertMessage) -> None:
        """Deliver one message; raise on failure (:func:`deliver` logs it)."""


class _WebhookSink:
    name = "webhook"

    def __init__(self, url: str, timeout_s: float) -> None:
        self._url = url
        self._timeout_s = timeout_s

    def payload(self, message: AlertMessage) -> dict[str, Any]:
        raise NotImplementedError

    def send(self, message: AlertMessage) -> None:
        from stepper.providers.http import session

        response = session().post(self._url, json=self.payload(message), timeout=self._timeout_s)
        response.close()
        if response.status_code >= 300:
            raise SinkError(f"{self.name} answered {response.status_code}")


class SinkError(Exception):
    """A webhook refused a message (its status, never its URL)."""


class SlackSink(_WebhookSink):
    """A Slack incoming webhook: ``text`` is the notification fallback, the section block is what people read."""

    name = "slack"

    def payload(self, message: AlertMessage) -> dict[str, Any]:
        emoji = ":red_circle:" if message.status == "firing" else ":large_green_circle:"
        text = _slack_escape(message.text[:MAX_TEXT_CHARS])
        return {
            "text": message.line[:MAX_TEXT_CHARS],
            "blocks": [
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"{emoji} *{message.status.upper()}* {text}"},
                }
            ],
        }


class DiscordSink(_WebhookSink):
    """A Discord webhook: an embed coloured red (firing) or green (resolved); mentions in the text never ping."""

    name = "discord"
    COLORS: Mapping[str, int] = {"firing": 0xE01E5A, "resolved": 0x2EB67D}

    def payload(self, message: AlertMessage) -> dict[str, Any]:
        return {
            "content": message.line[:MAX_TEXT_CHARS],
            "embeds": [
                {
                    "title": f"{message.status.upper()}: {message.key}"[:256],
                    "description": message.text[:MAX_TEXT_CHARS],
                    "color": self.COLORS[message.status],
                }
            ],
            "allowed_mentions": {"parse": []},
        }


def build_sinks(settings: AlertSettings, environ: Mapping[str, str] | None = None) -> list[AlertSink]:
    """The sinks whose webhook URL is set; none when neither is (checks still run and print)."""
    environ = os.environ if environ is None else environ
    sinks: list[AlertSink] = []
    if url := resolve_secret(settings.slack_webhook_url_env, environ):
        sinks.append(SlackSink(url, settings.timeout_s))
    if url := resolve_secret(settings.discord_webhook_url_env, environ):
        sinks.append(DiscordSink(url, settings.timeout_s))
    return sinks


def deliver(sinks: Iterable[AlertSink], message: AlertMessage) -> None:
    for sink in sinks:
        try:
            sink.send(message)
        except SinkError as exc:
            log.warning("alert %s not delivered: %s", message.key, exc)
        except Exception as exc:  # noqa: BLE001  (a sink never breaks the checker; the text may carry the URL)
            log.warning("alert %s not delivered to %s: %s", message.key, sink.name, type(exc).__name__)


class AlertStore(Protocol):
    """The state that deduplicates alerts: the alerts firing, the dead-letter baseline, ChainExhausted per minute."""

    def take(self, key: str, record: str) -> bool:
        """Mark ``key`` firing with its record (JSON); True only for the caller that marked it first."""
        ...

    def firing(self) -> dict[str, str]:
        """The alerts firing now: key -> record (JSON)."""
        ...

    def clear(self, key: str) -> bool:
        """Stop ``key`` firing; True only for the caller that cleared it first."""
        ...

    def dead_letter_growth(self, count: int, now: float, min_age_s: float) -> int:
        """New dead letters since the baseline (0 on the first call), moving the baseline to ``count`` at ``now``
        only once it is ``min_age_s`` old: a checker right after another reuses that check's growth."""
        ...

    def add_exhausted(self, now: float) -> None:
        """Count one ChainExhausted failure in the minute of ``now``, kept EXHAUSTED_TTL_S seconds."""
        ...

    def exhausted(self, minute: int) -> int:
        """ChainExhausted failures counted in ``minute`` (``now // 60``)."""
        ...


class RedisAlertStore:
    """The fleet's :class:`AlertStore`, in Redis: ``HSETNX``/``HDEL`` on one hash, a Lua baseline, expiring counters."""

    def __init__(self, client: Redis) -> None:
        self.client = client

    def take(self, key: str, record: str) -> bool:
        return bool(self.client.hsetnx(keys.alerts_firing(), key, record))

    def firing(self) -> dict[str, str]:
        return {as_text(key): as_text(record) for key, record in self.client.hgetall(keys.alerts_firing()).items()}

    def clear(self, key: str) -> bool:
        return bool(self.client.hdel(keys.alerts_firing(), key))

    def dead_letter_growth(self, count: int, now: float, min_age_s: float) -> int:
        baseline = keys.alerts_dead_letter_baseline()
        source = lua.source("alerts_dead_letter_growth")
        return int(self.client.eval(source, 1, baseline, count, repr(now), repr(min_age_s)))

    def add_exhausted(self, now: float) -> None:
        key = keys.alerts_exhausted(minute_of(now))
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, EXHAUSTED_TTL_S)
        pipe.execute()

    def exhausted(self, minute: int) -> int:
        value = self.client.get(keys.alerts_exhausted(minute))
        return int(value) if value is not None else 0


def minute_of(now: float) -> int:
    """The minute a ChainExhausted failure at ``now`` is counted in."""
    return int(now // 60)


def count_exhausted(client: Redis, now: float | None = None) -> None:
    """Count one ChainExhausted failure in this minute's counter (called by workers).

    Counting is best effort: Redis being unreachable is logged, never raised into the task that failed.
    """
    try:
        RedisAlertStore(client).add_exhausted(time.time() if now is None else now)
    except redis.RedisError as exc:
        log.warning("could not count a ChainExhausted failure for alerts (%s)", type(exc).__name__)


def alert_state(app: Any, client: Redis, queues: list[str], budgets_of: StepperSettings | None = None) -> FleetState:
    """The part of :func:`stepper.ops.fleet.read_fleet` alerts use: no worker broadcast, which waits a second;
    queue depths from ``app``'s broker; spend against the budgets ``budgets_of`` declares."""
    try:
        client.ping()
        depths = queue_depths(app, queues)
    except Exception as exc:  # noqa: BLE001  (the state's Redis or the broker unreachable: the answer itself)
        return FleetState(redis_ok=False, error=type(exc).__name__)
    return FleetState(
        redis_ok=True,
        queues=depths,
        breakers=breaker_states(client),
        dead_letters=int(client.zcard(keys.dead_letter_index())),
        spend=budget_uses(client, budgets_of) if budgets_of is not None else [],
    )


def budget_alerts(uses: Iterable[BudgetUse]) -> list[Alert]:
    """One alert per budget and share reached (80 % of it, all of it)."""
    alerts = []
    for use in uses:
        for share in BUDGET_ALERT_SHARES:
            if use.fraction >= share:
                alerts.append(
                    Alert(
                        f"budget_{share:.0%}".replace("%", "") + f":{use.scope}:{use.name}:{use.window}",
                        f"{use.describe()} is {use.fraction:.0%} spent ({use.spent:.4g} {use.currency}); "
                        f"it resets at {use.resets_at}",
                        f"{use.describe()} is back under {share:.0%} (a new {use.window})",
                    )
                )
    return alerts


def evaluate(state: FleetState, store: AlertStore, settings: AlertSettings, now: float) -> list[Alert]:
    """Every alert whose condition holds now (the dead letters counted in ``state``)."""
    alerts = [
        Alert(f"breaker_open:{name}", f"circuit breaker of {name} is {breaker}", f"circuit breaker of {name} closed")
        for name, breaker in state.breakers.items()
        if breaker in OPEN_BREAKER_STATES
    ]
    for queue, levels in state.queues.items():
        depth = sum(levels.values())
        if depth > settings.queue_depth_threshold:
            alerts.append(
                Alert(
                    f"queue_depth:{queue}",
                    f"queue {queue} has {depth} messages waiting (threshold {settings.queue_depth_threshold})",
                    f"queue {queue} is back under {settings.queue_depth_threshold} messages",
                )
            )
    growth = store.dead_letter_growth(state.dead_letters, now, min_age_s=settings.interval_s / 2)
    if growth > settings.dlq_growth_threshold:
        alerts.append(
            Alert(
                "dead_letters_growth",
                f"{growth} new dead letters since the previous check (threshold {settings.dlq_growth_threshold}); "
                "see `stepper dlq`",
                "dead letters no longer growing fast",
            )
        )
    alerts += budget_alerts(state.spend)
    exhausted = store.exhausted(minute_of(now) - 1)
    if exhausted > settings.exhausted_per_minute_threshold:
        alerts.append(
            Alert(
                "chain_exhausted_rate",
                f"{exhausted} requests failed on every provider (ChainExhausted) in the last minute "
                f"(threshold {settings.exhausted_per_minute_threshold})",
                "ChainExhausted failures back under the threshold",
            )
        )
    return alerts


def transitions(store: AlertStore, alerts: list[Alert], now: float) -> list[AlertMessage]:
    """The messages this checker won: alerts it took first, and firing alerts it cleared first."""
    active = {alert.key: alert for alert in alerts}
    messages: list[AlertMessage] = []
    for alert in alerts:
        record = json.dumps({"summary": alert.summary, "recovery": alert.recovery, "since": now})
        if store.take(alert.key, record):
            messages.append(AlertMessage("firing", alert.key, alert.summary))
    for key, raw_record in store.firing().items():
        if key in active or not store.clear(key):
            continue
        record = json.loads(raw_record)
        lasted = _duration(now - float(record.get("since", now)))
        messages.append(AlertMessage("resolved", key, f"{record.get('recovery', key)} (firing for {lasted})"))
    return messages


def run_checks(
    app: Any,
    client: Redis,
    settings: AlertSettings,
    sinks: Iterable[AlertSink],
    *,
    state: FleetState | None = None,
    now: float | None = None,
    budgets_of: StepperSettings | None = None,
) -> list[AlertMessage]:
    """One pass: read the fleet, take or clear alerts in Redis, send what this checker won; return those messages.
    Budgets are checked when ``budgets_of`` (the settings that declare them) is given."""
    now = time.time() if now is None else now
    if state is None:
        state = alert_state(app, client, [queue.name for queue in app.conf.task_queues], budgets_of)
    if not state.redis_ok:
        log.warning("alerts not checked: Redis unreachable (%s)", state.error)
        return []
    return check(RedisAlertStore(client), state, settings, sinks, now)


def check(
    store: AlertStore, state: FleetState, settings: AlertSettings, sinks: Iterable[AlertSink], now: float
) -> list[AlertMessage]:
    """Evaluate ``state``, take or clear alerts in ``store``, send what this checker won; return those messages."""
    messages = transitions(store, evaluate(state, store, settings, now), now)
    sinks = list(sinks)
    for message in messages:
        deliver(sinks, message)
    return messages


def watch(
    interval_s: float,
    *,
    app: Any = None,
    client: Redis | None = None,
    settings: AlertSettings | None = None,
    sinks: Iterable[AlertSink] | None = None,
    on_message: Callable[[AlertMessage], None] = lambda message: None,
    passes: int | None = None,
    budgets_of: StepperSettings | None = None,
) -> None:
    """Check every ``interval_s`` until interrupted (or ``passes`` times); a Redis outage skips a pass."""
    if app is None:
        from stepper.celery import app as celery_app

        app = celery_app
    if client is None:
        from stepper.infra.connections import state_redis

        client = state_redis()
    if settings is None:
        from stepper.config import current_settings

        settings = current_settings().alerts
    sinks = build_sinks(settings) if sinks is None else list(sinks)
    done = 0
    while passes is None or done < passes:
        try:
            for message in run_checks(app, client, settings, sinks, budgets_of=budgets_of):
                on_message(message)
        except redis.RedisError as exc:
            log.warning("alerts check skipped: Redis unreachable (%s)", type(exc).__name__)
        done += 1
        if passes is None or done < passes:
            time.sleep(interval_s)


def _slack_escape(text: str) -> str:
    """Slack reads ``<...>`` as links and mentions (``<!channel>``); escaped, the text shows as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(max(0, int(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m" if hours else f"{minutes}m {secs}s" if minutes else f"{secs}s"
