"""Signed outcome webhooks: a task's final outcome POSTed to the request's ``callback_url``.

A delivery is a Celery task of its own (``stepper.deliver_webhook``, queue ``callbacks``), so a slow or
failing receiver never holds a family task: :func:`schedule_webhook` enqueues it and returns. The worker
POSTs this JSON body::

    {"event": "task.succeeded" | "task.failed",
     "task_id": "<the family task's id>", "kind": "chat",
     "status": "SUCCESS" | "FAILURE" | "REVOKED",           # REVOKED: cancelled while it ran
     "result": <the task's result envelope> | null,          # on success
     "error": {"type": "ChainExhausted", "message": "..."} | null,  # on failure
     "sent_at": "2025-01-31T12:00:00.123Z"}                  # when the outcome was recorded (UTC)

with these headers:

- ``Stepper-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``, signed again at each
  attempt; a receiver checks it with :func:`verify` (or the README's ten lines) and rejects a ``t`` outside
  its tolerance, so a captured request cannot be replayed later.
- ``Stepper-Event``: the event, as in the body.
- ``Stepper-Delivery``: one id per delivery, the same on every retry of it: a receiver that remembers the ids
  it handled processes each outcome once.

2xx means delivered; redirects are not followed. A timeout, a connection failure or any other status is
retried with exponential backoff and full jitter (``Retry-After`` honoured on 429 and 503) until
``retry_for_s`` has passed since the first attempt; a 4xx other than 408 and 429 is permanent. Giving up
loses nothing: the outcome stays in the result backend. The secret (``secret_env``, or ``<NAME>_FILE``) is
read by the worker at each attempt; without it nothing is sent unsigned: the delivery fails with a
ConfigError. Callback URLs are checked twice: here, the URL's shape and a literal IP host; at connection
time, by :mod:`stepper.infra.net`, the address the socket actually reached (DNS rebinding included).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, get_args
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel

from stepper.config import current_settings
from stepper.errors import Cancelled, ConfigError, DeliveryFailed, InvalidRequest
from stepper.guards.backoff import full_jitter
from stepper.infra.net import BlockedAddress, Network, blocked_reason, parse_networks, process_session
from stepper.outcomes.base import OutcomeListener, RequestLike
from stepper.providers.http import parse_retry_after
from stepper.secrets import resolve_secret
from stepper.settings import WebhookSettings

if TYPE_CHECKING:
    from celery import Celery

__all__ = [
    "CALLBACKS_QUEUE",
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TASK_NAME",
    "Delivered",
    "Delivery",
    "DeliveryFailed",
    "Event",
    "RetryLater",
    "check_callback_url",
    "deliver",
    "outcome_payload",
    "schedule_webhook",
    "sign",
    "verify",
]

log = logging.getLogger(__name__)

Event = Literal["task.succeeded", "task.failed", "workflow.succeeded", "workflow.failed"]
EVENTS: tuple[Event, ...] = get_args(Event)
TASK_NAME = "stepper.deliver_webhook"
CALLBACKS_QUEUE = "callbacks"
SIGNATURE_HEADER = "Stepper-Signature"
EVENT_HEADER = "Stepper-Event"
DELIVERY_HEADER = "Stepper-Delivery"
#: How far a signature's timestamp may be from the receiver's clock, either way.
DEFAULT_TOLERANCE_S = 300.0
#: The 4xx statuses that are worth another try; every other 4xx is the receiver's final answer.
RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})
RETRY_AFTER_STATUSES = frozenset({429, 503})
_TIMESTAMP = re.compile(r"[0-9]{1,15}")


# --- signing ------------------------------------------------------------------------------------------


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``Stepper-Signature`` value: ``t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify(
    secret: bytes, header: str, body: bytes, tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None
) -> bool:
    """What a receiver must do: parse the header, reject a timestamp more than ``tolerance_s`` from now (either
    way: replays), recompute the HMAC over the raw body and compare in constant time. Several ``v1`` values are
    accepted (any may match), so a sender can sign with an old and a new secret while rotating. Never raises."""
    timestamps: list[int] = []
    signatures: list[bytes] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and _TIMESTAMP.fullmatch(value):
            timestamps.append(int(value))
        elif key == "v1" and value.isascii():
            signatures.append(value.encode("ascii"))
    if len(timestamps) != 1 or not signatures:
        return False
    timestamp = timestamps[0]
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = _digest(secret, timestamp, body).encode("ascii")
    # Every candidate is compared, so the time taken does not say which one (if any) matched.
    matches = [hmac.compare_digest(expected, candidate) for candidate in signatures]
    return any(matches)


def _digest(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


# --- what is sent, and to where -----------------------------------------------------------------------


def check_callback_url(url: str, settings: WebhookSettings) -> None:
    """Raise InvalidRequest unless ``url`` is an http(s) URL without credentials, whose host is allowed and is
    not a literal IP in a blocked range. Names are checked again on the connected socket at delivery."""
    if any(char.isspace() or not char.isprintable() for char in url):
        raise InvalidRequest("callback_url must not contain spaces or control characters")
    try:
        split = urlsplit(url)
        split.port  # noqa: B018  (parses the port: a bad one raises ValueError here, not at delivery)
    except ValueError as exc:
        raise InvalidRequest(f"callback_url is not a valid URL ({exc})") from None
    if split.scheme not in {"http", "https"}:
        raise InvalidRequest(f"callback_url must be http or https, not {split.scheme!r}")
    if "@" in split.netloc:
        raise InvalidRequest("callback_url must not carry credentials (user:password@); authenticate by signature")
    host = _normal_host(split.hostname or "")
    if not host:
        raise InvalidRequest("callback_url has no host")
    allowed_hosts = {_normal_host(allowed) for allowed in settings.allowed_hosts}
    if allowed_hosts and host not in allowed_hosts:
        raise InvalidRequest(
            f"callback host {host!r} is not allowed; callbacks go only to {', '.join(sorted(allowed_hosts))} "
            "(stepper_webhooks['allowed_hosts'])"
        )
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return  # a name: its addresses are checked when the worker connects
    reason = blocked_reason(host, _networks(settings.allowed_networks))
    if reason is not None:
        raise InvalidRequest(
            f"callback host {host} is {reason}; callbacks go only to public addresses "
            "(an operator can allow networks with stepper_webhooks['allowed_networks'])"
        )


def outcome_payload(task_id: str, kind: str, result: Any = None, error: BaseException | None = None) -> dict[str, Any]:
    """The body of an outcome webhook: a failure when ``error`` is given, a success with ``result`` otherwise.

    ``sent_at`` is when the outcome was recorded, so it is the same on every retry of the delivery."""
    failed = error is not None
    return {
        "event": "task.failed" if failed else "task.succeeded",
        "task_id": task_id,
        "kind": kind,
        "status": "REVOKED" if isinstance(error, Cancelled) else "FAILURE" if failed else "SUCCESS",
        "result": None if failed else result,
        "error": {"type": type(error).__name__, "message": str(error)} if error is not None else None,
        "sent_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def schedule_webhook(url: str, event: str, payload: dict[str, Any], app: Celery | None = None) -> None:
    """Enqueue one delivery on the ``callbacks`` queue (priority ``normal``) and return at once.

    ``app`` defaults to ``stepper.celery.app``; pass another app to send through another broker. The URL is
    checked by the worker that delivers, against the workers' settings (:func:`check_callback_url` checks it
    earlier, e.g. when a request is accepted)."""
    if event not in EVENTS:
        raise InvalidRequest(f"unknown webhook event {event!r}; use one of {', '.join(EVENTS)}")
    if app is None:
        from stepper.celery import app as default_app

        app = default_app
    app.send_task(
        TASK_NAME,
        kwargs={
            "url": url,
            "event": event,
            "payload": payload,
            "delivery_id": uuid.uuid4().hex,
            "first_attempt_at": time.time(),
        },
        queue=CALLBACKS_QUEUE,
        priority="normal",
    )


class WebhookListener(OutcomeListener):
    """Enqueues the outcome's webhook when the request asked for one and its URL is allowed here."""

    def succeeded(self, task_id: str, kind: str, request: BaseModel, result: dict[str, Any]) -> None:
        _notify(
            getattr(request, "callback_url", None), "task.succeeded", lambda: outcome_payload(task_id, kind, result)
        )

    def failed(self, task_id: str, kind: str, request: RequestLike, error: BaseException, retries: int) -> None:
        raw = request.model_dump(mode="json") if isinstance(request, BaseModel) else request
        callback_url = raw.get("callback_url")
        _notify(
            callback_url if isinstance(callback_url, str) else None,
            "task.failed",
            lambda: outcome_payload(task_id, kind, error=error),
        )


def _notify(callback_url: str | None, event: str, payload: Callable[[], dict[str, Any]]) -> None:
    if callback_url is None:
        return
    try:
        check_callback_url(callback_url, current_settings().webhooks)
        schedule_webhook(callback_url, event, payload())
    except InvalidRequest as exc:
        log.warning("not calling back (%s): %s", event, exc)


# --- delivering -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One outcome on its way to one receiver: the kwargs of ``stepper.deliver_webhook``, the same on each retry."""

    url: str
    event: str
    payload: Mapping[str, Any]
    delivery_id: str
    #: Unix time the delivery was scheduled; retries stop ``retry_for_s`` after it.
    first_attempt_at: float


@dataclass(frozen=True)
class Delivered:
    delivery_id: str
    status: int
    attempts: int

    def as_result(self) -> dict[str, Any]:
        return {"delivery_id": self.delivery_id, "status": self.status, "attempts": self.attempts}


@dataclass(frozen=True)
class RetryLater:
    """The attempt failed transiently: try again in ``countdown_s``."""

    countdown_s: float
    reason: str


@dataclass(frozen=True)
class _Answer:
    status: int | None  # None: no HTTP answer (timeout, connection failure)
    reason: str
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def permanent(self) -> bool:
        return self.status is not None and 400 <= self.status < 500 and self.status not in RETRYABLE_CLIENT_STATUSES


def deliver(
    delivery: Delivery,
    attempt: int,
    settings: WebhookSettings,
    countdown_cap_s: float,
    *,
    environ: Mapping[str, str] | None = None,
    now: Callable[[], float] = time.time,
    rand: Callable[[], float] = random.random,
) -> Delivered | RetryLater:
    """One attempt (``attempt`` counts from 1): POST the signed body and say what comes next.

    Raises ConfigError when the secret is missing, InvalidRequest when the URL is refused and DeliveryFailed on
    a permanent answer or once the retry window is over; each is logged first. ``countdown_cap_s`` keeps a
    retry's countdown below the broker's visibility timeout (stepper_retry.task_countdown_cap_s)."""
    label = f"webhook {delivery.delivery_id} to {_target(delivery.url)}"
    try:
        secret = resolve_secret(settings.secret_env, environ)
    except ConfigError as exc:
        log.error("%s not sent: %s", label, exc)
        raise
    if secret is None:
        message = (
            f"{settings.secret_env} is not set, so {label} was not sent (it is never sent unsigned); "
            f"set {settings.secret_env} or {settings.secret_env}_FILE on the workers"
        )
        log.error(message)
        raise ConfigError(message)
    try:
        check_callback_url(delivery.url, settings)
    except InvalidRequest as exc:
        log.error("%s refused: %s", label, exc)
        raise
    answer = _post(delivery, secret.encode("utf-8"), settings, int(now()))
    if answer.delivered:
        assert answer.status is not None
        log.info("%s delivered (%s, attempt %d)", label, answer.reason, attempt)
        return Delivered(delivery.delivery_id, answer.status, attempt)
    failed = f"{label} failed ({answer.reason}) at attempt {attempt}"
    if answer.permanent:
        raise _given_up(f"{failed}: the receiver refused it; not retried")
    remaining_s = delivery.first_attempt_at + settings.retry_for_s - now()
    if remaining_s <= 0:
        raise _given_up(f"{failed}; gave up: the {settings.retry_for_s:g}s retry window (retry_for_s) is over")
    countdown = full_jitter(attempt - 1, settings.backoff_base_s, settings.backoff_cap_s, rand)
    if answer.retry_after_s is not None:
        if answer.retry_after_s > remaining_s:
            raise _given_up(
                f"{failed}; gave up: the receiver asked to wait {answer.retry_after_s:g}s, past the end of the "
                f"{settings.retry_for_s:g}s retry window (retry_for_s)"
            )
        countdown = max(countdown, answer.retry_after_s)
    countdown = min(countdown, remaining_s, countdown_cap_s)
    log.warning("%s; retrying in %.2fs", failed, countdown)
    return RetryLater(countdown, answer.reason)


def _given_up(message: str) -> DeliveryFailed:
    log.error(message)
    return DeliveryFailed(message)


def _post(delivery: Delivery, secret: bytes, settings: WebhookSettings, timestamp: int) -> _Answer:
    # The exact bytes signed are the bytes sent; a receiver verifies the raw body before parsing it.
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "stepper-webhooks/1",
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        EVENT_HEADER: delivery.event,
        DELIVERY_HEADER: delivery.delivery_id,
    }
    session = process_session(_networks(settings.allowed_networks))
    try:
        response = session.post(
            delivery.url, data=body, headers=headers, timeout=settings.timeout_s, allow_redirects=False, stream=True
        )
    except BlockedAddress as exc:
        reason = str(exc).split(";", 1)[0]
        raise InvalidRequest(
            f"{reason}; callbacks go only to public addresses "
            "(an operator can allow networks with stepper_webhooks['allowed_networks'])"
        ) from None
    except requests.exceptions.Timeout:
        return _Answer(None, f"no answer within {settings.timeout_s:g}s")
    except requests.exceptions.RequestException as exc:
        # The exception's text quotes the URL, which may carry a token in its path or query: name the type only.
        return _Answer(None, f"connection failed ({type(exc).__name__})")
    response.close()  # the body is never read: a receiver cannot make a worker download anything
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After")) if status in RETRY_AFTER_STATUSES else None
    return _Answer(status, f"HTTP {status}", retry_after)


def _networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    try:
        return parse_networks(values)
    except ValueError as exc:
        raise ConfigError(f"stepper_webhooks['allowed_networks'] has an invalid network ({exc})") from None


def _normal_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _target(url: str) -> str:
    """Where a callback goes, for logs: scheme, host and port only (a path or query may carry a token)."""
    try:
        split = urlsplit(url)
        port = f":{split.port}" if split.port else ""
    except ValueError:
        return "an invalid URL"
    host = split.hostname or "?"
    return f"{split.scheme}://{f'[{host}]' if ':' in host else host}{port}"
