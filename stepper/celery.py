"""The Celery app, found by ``celery -A stepper worker``.

Configuration is merged by :mod:`stepper.config` (package defaults, then ``celeryconfig``, then the
environment) and validated here, so a bad setting stops a worker at start-up with a message that names it.
"""

from __future__ import annotations

import logging
import reprlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from celery import Celery, Task
from celery.app.control import Control
from kombu.transport.native_delayed_delivery import (
    bind_queue_to_native_delayed_delivery_exchange,
    declare_native_delayed_delivery_exchanges_and_queues,
)
from redis import Redis

from stepper.brokers import REDIS_TRANSPORTS, BrokerKind, broker_kind, split_sentinel_url, task_queue
from stepper.config import current_config, parse_stepper_settings, resolve_state_url
from stepper.infra import delayed, inflight, revokes
from stepper.infra.connections import client_for
from stepper.priorities import broker_priority, level_of, priority_value
from stepper.schemas import KINDS

log = logging.getLogger(__name__)

#: Shorter delays go to the broker as Celery's own ETA messages (a worker holds them for at most this long).
MIN_KEPT_DELAY_S = 1.0
#: The family tasks, whose messages are journaled until they finish (stepper.infra.inflight).
FAMILY_TASKS = frozenset(f"stepper.{kind}" for kind in KINDS)
#: Options of ``send_task`` that are not part of the message: not kept with a delayed one.
_NOT_KEPT = frozenset({"countdown", "eta", "producer", "connection", "publisher", "router", "result_cls", "task_type"})


def _bounded_repr() -> reprlib.Repr:
    """The repr of a message's arguments (StepperCelery._publish): the standard library's bounded repr, as deep
    as Celery's ``task_repr_maxlevels``, strings cut at 200 characters and containers after a few items. Celery's
    own ``saferepr`` streams every token through generators: 41 against 12 µs for a small chat request."""
    bounded = reprlib.Repr()
    bounded.maxlevel, bounded.maxdict, bounded.maxlist, bounded.maxtuple = 3, 16, 8, 8
    bounded.maxstring, bounded.maxother = 200, 60
    return bounded


_SHOWN = _bounded_repr()


class StepperControl(Control):  # type: ignore[misc]
    """Celery's remote control, with revokes recorded in Redis as well as broadcast (see stepper.infra.revokes):
    ``AsyncResult.revoke``, ``app.control.revoke`` and the gateway come here. (``celery control revoke``
    broadcasts the raw command and is not recorded: use ``AsyncResult(id).revoke()``.)"""

    def revoke(self, task_id: str | list[str], *args: Any, **kwargs: Any) -> Any:
        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        revokes.record(self.app.state_client(), ids, float(self.app.conf.result_expires or 86400))
        return super().revoke(task_id, *args, **kwargs)


class StepperTask(Task):  # type: ignore[misc]
    """Every stepper task: a retry keeps the stepper level of the message it retries. Celery copies the delivered
    message's ``priority`` property into the retry's options, and on RabbitMQ that number is reversed
    (stepper.priorities): it is turned back into the level, which ``send_task`` reverses again."""

    def signature_from_request(self, request: Any = None, args: Any = None, kwargs: Any = None, **extra: Any) -> Any:
        signature = super().signature_from_request(request, args, kwargs, **extra)
        priority = signature.options.get("priority")
        if isinstance(priority, int):
            signature.options["priority"] = level_of(priority, self.app.broker_kind)
        return signature


class StepperCelery(Celery):  # type: ignore[misc]
    """Celery, with stepper's priority and delay rules on every message it sends.

    Every path (``submit``, ``task.delay``, ``send_task`` by name, Celery's own retries) ends in ``send_task``,
    so this is the one place that accepts priority names and gives a message without a priority the
    ``normal`` level (kombu would otherwise file it under 0, the most urgent), that keeps a stepper
    task's message with a countdown or ETA in Redis until it is due (stepper.infra.delayed), that turns a
    request's ``deadline_s`` into the message's ``expires``, and that journals
    every family task's message before it is published, so one lost in flight comes back
    (stepper.infra.inflight).
    """

    control_cls = "stepper.celery:StepperControl"
    amqp_cls = "stepper.infra.producers:AMQP"
    task_cls = "stepper.celery:StepperTask"
    _native_delays_declared = False

    @cached_property
    def broker_kind(self) -> BrokerKind:
        """Which broker carries this app's messages: "redis" (Redis, Sentinel) or "amqp" (RabbitMQ). Read once,
        like the state's URL: a task asks several times, and Celery's configuration lookups cost microseconds."""
        return broker_kind(str(self.conf.broker_url))

    @cached_property
    def state_url(self) -> str:
        """The URL of the Redis holding this app's fleet state (see stepper.config.resolve_state_url)."""
        return resolve_state_url(self.conf)

    @property
    def native_delays(self) -> bool:
        """Whether RabbitMQ holds countdowns itself (quorum queues, Celery's native delayed delivery)."""
        return self.broker_kind == "amqp" and (self.conf.get("stepper_rabbitmq") or {}).get("queue_type") == "quorum"

    def send_task(self, name: str, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        """Celery's ``send_task``, with stepper's priorities, deadlines, kept delays and in-flight journal. An
        admission the caller set around it (:data:`stepper.infra.inflight.admitting`) is asked before the message
        is pushed, in the push's own script where it can be; its refusal raises and nothing is sent."""
        admission = inflight.admitting.get()
        options["priority"] = priority_value(options.get("priority"))
        deadline_s = (kwargs or {}).get("deadline_s") if name in FAMILY_TASKS else None
        if isinstance(deadline_s, int | float) and deadline_s > 0 and options.get("expires") is None:
            # The caller's budget counts from now: a message still queued when it is spent never runs (Celery
            # marks it REVOKED as expired), and retries keep the same ``expires``.
            options["expires"] = datetime.now(UTC) + timedelta(seconds=deadline_s)
        delay_s = _delay_s(options.get("countdown"), options.get("eta"))
        kept_here = name.startswith("stepper.") and not self.native_delays
        if kept_here and delay_s is not None and delay_s >= MIN_KEPT_DELAY_S:
            if admission is not None:
                admission.ask()
            kept = self._keep_until_due(name, args, kwargs, options, delay_s)
            if kept is not None:
                return kept
        if delay_s is not None and delay_s > 0 and self.native_delays:
            self._declare_native_delays()
        # RabbitMQ confirms every publish (confirm_publish): a message it accepted is not lost in flight.
        task_id = options["task_id"] = str(options.get("task_id") or uuid.uuid4())
        journaled = name in FAMILY_TASKS and self.broker_kind != "amqp"
        message = self._message(name, args, kwargs, options, task_id) if journaled else None
        if message is None:
            if admission is not None:
                admission.ask()
            return self._publish(name, args, kwargs, options)
        return self._publish_journaled(name, args, kwargs, options, message, admission)

    def _declare_native_delays(self) -> None:
        """Declare Celery's native delayed delivery exchanges and queues and bind stepper's queues to them, once
        per process: workers do so when they start, but a producer may send a countdown before any worker ran
        (Celery would publish to ``celery_delayed_27`` before it exists, and RabbitMQ refuses that)."""
        if self._native_delays_declared:
            return
        with self.connection_for_write() as connection:
            declare_native_delayed_delivery_exchanges_and_queues(
                connection, self.conf.broker_native_delayed_delivery_queue_type
            )
            for queue in self.amqp.queues.values():
                queue(connection.default_channel).declare()
                bind_queue_to_native_delayed_delivery_exchange(connection, queue)
        self._native_delays_declared = True

    def _publish(self, name: str, args: Any, kwargs: Any, options: dict[str, Any]) -> Any:
        """Celery's send_task, with the level turned into the broker's own priority number last (what was kept,
        delayed or journaled, holds the level), and the arguments' display (``argsrepr`` and ``kwargsrepr``: in
        events, Flower and ``celery inspect``) worked out by :data:`_SHOWN`, cut to Celery's own maximum sizes."""
        return super().send_task(
            name,
            args,
            kwargs,
            **{
                "argsrepr": _SHOWN.repr(args or ())[: self.amqp.argsrepr_maxsize],
                "kwargsrepr": _SHOWN.repr(kwargs or {})[: self.amqp.kwargsrepr_maxsize],
                **options,
                "priority": broker_priority(options["priority"], self.broker_kind),
            },
        )

    def state_client(self) -> Redis:
        """The Redis holding this app's fleet state (see :attr:`state_url`)."""
        return client_for(self.state_url)

    @cached_property
    def _journal_in_broker(self) -> bool:
        """Whether the in-flight journal lives in the broker's Redis: the transport then writes each entry with
        its message (stepper.infra.redis_transport). A Sentinel broker URL has lost its master name to the
        transport options (stepper.config), so the state's URL is compared the same way."""
        state_url, state_options = split_sentinel_url(self.state_url)
        broker_options = self.conf.broker_transport_options or {}
        same_master = state_options.get("master_name") == broker_options.get("master_name")
        return state_url == str(self.conf.broker_url) and same_master

    @cached_property
    def _transport_journals(self) -> bool:
        """Whether the broker's transport writes the journal entries (stepper's own Redis transport)."""
        return self.conf.broker_transport in REDIS_TRANSPORTS.values()

    def _publish_journaled(  # noqa: PLR0917  (send_task's arguments, then what it worked out)
        self,
        name: str,
        args: Any,
        kwargs: Any,
        options: dict[str, Any],
        message: delayed.DelayedMessage,
        admission: inflight.PublishAdmission | None,
    ) -> Any:
        """Publish ``message`` with its entry in the in-flight journal (see stepper.infra.inflight), and
        ``admission`` asked first: by stepper's transport with the message or just before it, else here before
        the publish."""
        task_id = options["task_id"]
        publishing = inflight.Publishing(
            self.state_client(), task_id, message.to_json(), self._journal_in_broker, admission
        )
        if not self._transport_journals:
            publishing.journal()
        token = inflight.publishing.set(publishing)
        try:
            sent = self._publish(name, args, kwargs, options)
        except Exception:
            if publishing.journaled:  # nothing was published: nothing to reconcile
                inflight.forget(self.state_client(), [task_id])
            self._unsubscribe(task_id)
            raise
        finally:
            inflight.publishing.reset(token)
        if not publishing.journaled:  # published by another transport (kombu's, after a failover to another URL)
            publishing.admission = None  # the message is out: its admission could only refuse what was sent
            publishing.journal()
        return sent

    def _unsubscribe(self, task_id: str) -> None:
        """Stop waiting for the result of a task whose publish failed: Celery's Redis backend subscribed to its
        result's channel before the publish (``on_task_call``), and no result will ever come."""
        consumer = getattr(self.backend, "result_consumer", None)
        if consumer is not None:
            consumer.cancel_for(task_id)

    def _message(
        self, name: str, args: Any, kwargs: Any, options: dict[str, Any], task_id: str
    ) -> delayed.DelayedMessage | None:
        """``send_task``'s call as a JSON message, or None (logged) when an option is not JSON."""
        kept = {key: value for key, value in options.items() if key not in _NOT_KEPT} | {"task_id": task_id}
        message = delayed.DelayedMessage(name, list(args or ()), dict(kwargs or {}), kept)
        try:
            message.to_json()
        except TypeError as exc:
            log.warning("%s %s is sent without stepper's bookkeeping: an option is not JSON (%s)", name, task_id, exc)
            return None
        return message

    def _keep_until_due(self, name: str, args: Any, kwargs: Any, options: dict[str, Any], delay_s: float) -> Any:
        task_id = str(options.get("task_id") or uuid.uuid4())
        message = self._message(name, args, kwargs, options, task_id)
        if message is None:
            return None
        delayed.schedule(self.state_client(), message, delay_s)
        result_cls = options.get("result_cls") or self.AsyncResult
        return result_cls(task_id)


def _delay_s(countdown: Any, eta: Any) -> float | None:
    """Seconds from now until a message with this ``countdown`` (seconds) or ``eta`` (a datetime or ISO 8601
    text) is due; None when it has neither."""
    if countdown is not None:
        return float(countdown)
    if eta is None:
        return None
    due = eta if isinstance(eta, datetime) else datetime.fromisoformat(str(eta))
    if due.tzinfo is None:
        due = due.replace(tzinfo=UTC)
    return (due - datetime.now(UTC)).total_seconds()


def create_app(config: Mapping[str, Any] | None = None) -> StepperCelery:
    """A configured app; ``config`` defaults to this process's merged configuration."""
    config = dict(current_config() if config is None else config)
    rabbitmq = parse_stepper_settings(config).rabbitmq
    app = StepperCelery("stepper", include=["stepper.tasks", "stepper.workflows.tasks", "stepper.workers.process"])
    broker = broker_kind(str(config["broker_url"]))
    app.config_from_object(
        {
            **config,
            # One queue per family, named after it, one for webhook deliveries and one for the workflows' own
            # tasks (stepper.workflows.tasks); a worker started without -Q consumes them all. On RabbitMQ:
            # durable, with a dead-letter exchange (stepper.brokers).
            "task_queues": [task_queue(name, broker, rabbitmq) for name in (*KINDS, "callbacks", "workflows")],
            "task_routes": {
                **{f"stepper.{kind}": {"queue": kind} for kind in KINDS},
                "stepper.voices": {"queue": "speech"},
                "stepper.deliver_webhook": {"queue": "callbacks"},
                "stepper.workflow.*": {"queue": "workflows"},
            },
        }
    )
    # Stranded messages back on their queues, delayed ones published when due, revokes loaded (workers.housekeeping).
    app.steps["worker"].add("stepper.workers.housekeeping:HousekeepingStep")
    return app


app = create_app()
