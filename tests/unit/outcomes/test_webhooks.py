"""Outcome webhooks: the signature a receiver checks, the URLs refused, and one delivery attempt against a
loopback receiver (what is sent, what is retried, what is final, what is never logged)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepper.errors import ChainExhausted, ConfigError, InvalidRequest
from stepper.outcomes.webhooks import (
    CALLBACKS_QUEUE,
    TASK_NAME,
    Delivered,
    Delivery,
    DeliveryFailed,
    RetryLater,
    check_callback_url,
    deliver,
    outcome_payload,
    schedule_webhook,
    sign,
    verify,
)
from stepper.settings import WebhookSettings
from tests.support.fake_http import FakeServer, Fault, Reply, running

FUZZ = settings(max_examples=200, deadline=None, database=None)
SECRET = "whsec-unit-test-0123456789"
NOW = 1_700_000_000
LOOPBACK = WebhookSettings(allowed_networks=("127.0.0.1/32",), backoff_base_s=2.0, backoff_cap_s=300.0)
ENV = {"STEPPER_WEBHOOK_SECRET": SECRET}
PAYLOAD = outcome_payload("task-1", "chat", result={"kind": "chat", "output": {"text": "héllo"}})


# --- sign and verify ----------------------------------------------------------------------------------


def test_signature_is_stripe_like() -> None:
    header = sign(b"key", 1234, b'{"a":1}')
    expected = hmac.new(b"key", b'1234.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1234,v1={expected}"


@FUZZ
@given(secret=st.binary(min_size=1, max_size=64), body=st.binary(max_size=2000), timestamp=st.integers(0, 2**40))
def test_round_trip(secret: bytes, body: bytes, timestamp: int) -> None:
    assert verify(secret, sign(secret, timestamp, body), body, now=timestamp)


@FUZZ
@given(body=st.binary(min_size=1, max_size=500), data=st.data())
def test_any_changed_byte_is_rejected(body: bytes, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    assert not verify(b"secret", sign(b"secret", NOW, body), tampered, now=NOW)


@FUZZ
@given(header=st.text(max_size=200), body=st.binary(max_size=100))
def test_arbitrary_headers_never_raise_and_never_pass(header: str, body: bytes) -> None:
    assert verify(b"secret", header, body, now=NOW) is False


def test_wrong_secret_is_rejected() -> None:
    assert not verify(b"other", sign(b"secret", NOW, b"{}"), b"{}", now=NOW)


def test_appended_body_is_rejected() -> None:
    assert not verify(b"secret", sign(b"secret", NOW, b"{}"), b"{} ", now=NOW)


@pytest.mark.parametrize(("offset_s", "accepted"), [(-301, False), (-300, True), (0, True), (300, True), (301, False)])
def test_timestamps_outside_the_tolerance_are_rejected(offset_s: int, accepted: bool) -> None:
    """Stale (a replay) and future timestamps alike; the boundary is inclusive."""
    header = sign(b"secret", NOW, b"{}")
    assert verify(b"secret", header, b"{}", now=NOW + offset_s) is accepted
    assert verify(b"secret", header, b"{}", tolerance_s=1000, now=NOW + offset_s)


def test_a_replayed_signature_is_rejected_once_stale() -> None:
    header = sign(b"secret", NOW, b"{}")
    assert not verify(b"secret", header, b"{}", now=NOW + 3600)


def test_default_clock_is_now() -> None:
    assert verify(b"secret", sign(b"secret", int(time.time()), b"{}"), b"{}")
    assert not verify(b"secret", sign(b"secret", int(time.time()) - 3600, b"{}"), b"{}")


def test_any_of_several_v1_values_may_match() -> None:
    """A sender rotating its secret signs with both; the receiver knows one of them."""
    good = sign(b"secret", NOW, b"{}").split("v1=")[1]
    assert verify(b"secret", f"t={NOW},v1={'0' * 64},v1={good}", b"{}", now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "t=,v1=",
        f"v1={'a' * 64}",  # no timestamp
        f"t={NOW}",  # no signature
        f"t={NOW},t={NOW},v1=GOOD",  # ambiguous timestamp
        "t=-5,v1=GOOD",
        "t=1e9,v1=GOOD",
        "t=１２,v1=GOOD",  # non-ASCII digits  # noqa: RUF001
        f"t={NOW},v0=GOOD",
        f"t={NOW},v1=GOOD!",
    ],
)
def test_malformed_headers_are_rejected(header: str) -> None:
    good = sign(b"secret", NOW, b"{}").split("v1=")[1]
    assert not verify(b"secret", header.replace("GOOD", good), b"{}", now=NOW)


def test_the_readme_receiver_example_works() -> None:
    """The ten stdlib-only lines in README's Webhooks section accept, deduplicate and reject as they say."""
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Webhooks", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(code.group(1), namespace)
    check: Callable[..., str] = namespace["check_delivery"]
    body, seen = b'{"event":"task.succeeded"}', set[str]()
    now = int(time.time())

    def headers(signature: str, delivery: str = "d-1") -> dict[str, str]:
        return {"Stepper-Signature": signature, "Stepper-Delivery": delivery}

    assert check(b"k", headers(sign(b"k", now, body)), body, seen) == "new"
    assert check(b"k", headers(sign(b"k", now + 5, body)), body, seen) == "duplicate"
    assert check(b"k", headers(sign(b"k", now, body), "d-2"), body + b" ", seen) == "invalid"
    assert check(b"other", headers(sign(b"k", now, body), "d-2"), body, seen) == "invalid"
    assert check(b"k", headers(sign(b"k", now - 301, body), "d-2"), body, seen) == "invalid"
    assert check(b"k", headers(sign(b"k", now + 301, body), "d-2"), body, seen) == "invalid"
    assert check(b"k", headers("t=１２,v1=é", "d-2"), body, seen) == "invalid"  # noqa: RUF001
    assert seen == {"d-1"}


# --- callback URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hooks/stepper",
        "http://example.com:8080/x?token=abc",
        "https://93.184.216.34/hook",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
        "http://localhost/hook",  # a name: checked on the connected socket at delivery
    ],
)
def test_accepted_urls(url: str) -> None:
    check_callback_url(url, WebhookSettings())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "must be http or https, not 'ftp'"),
        ("example.com/hook", "must be http or https, not ''"),
        ("file:///etc/passwd", "must be http or https, not 'file'"),
        ("https://user:hunter2@example.com/", "must not carry credentials"),
        ("https://user@example.com/", "must not carry credentials"),
        ("http:///hook", "has no host"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://example.com/a b", "spaces or control characters"),
        ("http://example.com/\r\nX-Injected: 1", "spaces or control characters"),
        ("http://127.0.0.1:8000/hook", "127.0.0.1 is a loopback address"),
        ("http://[::1]/hook", "::1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]/hook", "a loopback address"),
        ("http://10.1.2.3/hook", "a private address"),
        ("http://192.168.0.10/hook", "a private address"),
        ("http://169.254.169.254/latest/meta-data", "a cloud metadata address"),
        ("http://0.0.0.0/hook", "an unspecified address"),
    ],
)
def test_refused_urls(url: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        check_callback_url(url, WebhookSettings())


def test_credentials_are_not_echoed() -> None:
    with pytest.raises(InvalidRequest) as raised:
        check_callback_url("https://user:hunter2@example.com/", WebhookSettings())
    assert "hunter2" not in str(raised.value)


def test_allowed_networks_let_a_private_address_through() -> None:
    check_callback_url("http://127.0.0.1:8000/hook", LOOPBACK)
    with pytest.raises(InvalidRequest, match="loopback"):
        check_callback_url("http://127.0.0.2:8000/hook", LOOPBACK)


def test_allowed_hosts_restrict_receivers() -> None:
    only = WebhookSettings(allowed_hosts=("Hooks.Example.com",))
    check_callback_url("https://hooks.example.com/x", only)
    check_callback_url("https://HOOKS.example.com./x", only)
    with pytest.raises(
        InvalidRequest, match=re.escape("'evil.example.com' is not allowed; callbacks go only to hooks.example.com")
    ):
        check_callback_url("https://evil.example.com/x", only)
    with pytest.raises(InvalidRequest, match="loopback"):  # an allowed host is still subject to the network check
        check_callback_url("http://127.0.0.1/x", WebhookSettings(allowed_hosts=("127.0.0.1",)))


def test_a_bad_allowed_network_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"stepper_webhooks\['allowed_networks'\]"):
        check_callback_url("http://10.0.0.1/", WebhookSettings(allowed_networks=("not-a-network",)))


@FUZZ
@given(url=st.one_of(st.text(max_size=80), st.from_regex(r"https?://[^/]{0,30}(/.{0,20})?", fullmatch=True)))
def test_any_string_is_accepted_or_refused_with_invalid_request(url: str) -> None:
    with contextlib.suppress(InvalidRequest):  # any other exception fails the test
        check_callback_url(url, WebhookSettings())


# --- payload and scheduling ---------------------------------------------------------------------------


def test_success_payload() -> None:
    payload = outcome_payload("t-1", "chat", result={"output": 1})
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", payload.pop("sent_at"))
    assert payload == {
        "event": "task.succeeded",
        "task_id": "t-1",
        "kind": "chat",
        "status": "SUCCESS",
        "result": {"output": 1},
        "error": None,
    }


def test_failure_payload() -> None:
    payload = outcome_payload("t-2", "ocr", error=ChainExhausted("every provider failed"))
    del payload["sent_at"]
    assert payload == {
        "event": "task.failed",
        "task_id": "t-2",
        "kind": "ocr",
        "status": "FAILURE",
        "result": None,
        "error": {"type": "ChainExhausted", "message": "every provider failed"},
    }
    json.dumps(payload)


def test_schedule_sends_the_delivery_task_on_the_callbacks_queue() -> None:
    sent: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    app = SimpleNamespace(send_task=lambda name, kwargs, **options: sent.append((name, kwargs, options)))
    before = time.time()
    schedule_webhook("https://example.com/h", "task.succeeded", PAYLOAD, app=app)
    schedule_webhook("https://example.com/h", "task.succeeded", PAYLOAD, app=app)
    (name, kwargs, options), (_, second, _) = sent
    assert name == TASK_NAME == "stepper.deliver_webhook"
    assert options == {"queue": CALLBACKS_QUEUE, "priority": "normal"}
    assert set(kwargs) == {"url", "event", "payload", "delivery_id", "first_attempt_at"}
    assert (kwargs["url"], kwargs["event"], kwargs["payload"]) == ("https://example.com/h", "task.succeeded", PAYLOAD)
    assert before <= kwargs["first_attempt_at"] <= time.time()
    assert kwargs["delivery_id"] != second["delivery_id"]


def test_schedule_refuses_unknown_events() -> None:
    app = SimpleNamespace(send_task=lambda *args, **kwargs: pytest.fail("sent"))
    with pytest.raises(InvalidRequest, match=re.escape("unknown webhook event 'task.done'")):
        schedule_webhook("https://example.com/h", "task.done", PAYLOAD, app=app)


def test_the_app_routes_deliveries_to_their_own_queue() -> None:
    from stepper.celery import app

    assert "callbacks" in {queue.name for queue in app.conf.task_queues}
    assert app.amqp.router.route({}, TASK_NAME)["queue"].name == "callbacks"


# --- one delivery attempt -----------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[FakeServer]:
    fake = FakeServer()
    fake.route("POST", "/hook", lambda request: Reply(200, {"ok": True}))
    fake.route("POST", "/moved", lambda request: Reply(302, b"", {"Location": "/hook"}))
    yield from running(fake)


def attempt(
    url: str,
    *,
    number: int = 1,
    settings: WebhookSettings = LOOPBACK,
    first_attempt_at: float = NOW,
    now: float = NOW + 1,
    cap_s: float = 300.0,
    environ: dict[str, str] = ENV,
) -> Delivered | RetryLater:
    delivery = Delivery(url, "task.succeeded", PAYLOAD, "delivery-1", first_attempt_at)
    return deliver(delivery, number, settings, cap_s, environ=environ, now=lambda: now, rand=lambda: 1.0)


def test_a_delivery_is_signed_and_carries_the_payload(receiver: FakeServer) -> None:
    outcome = attempt(f"{receiver.url}/hook?token=abc")
    assert outcome == Delivered("delivery-1", 200, 1)
    (request,) = receiver.requests
    assert request.json() == PAYLOAD
    assert request.headers["content-type"] == "application/json"
    assert request.headers["stepper-event"] == "task.succeeded"
    assert request.headers["stepper-delivery"] == "delivery-1"
    assert request.headers["stepper-signature"] == sign(SECRET.encode(), NOW + 1, request.body)
    assert verify(SECRET.encode(), request.headers["stepper-signature"], request.body, now=NOW + 1)
    assert request.query == {"token": ["abc"]}


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429, 302])
def test_transient_answers_are_retried_with_backoff(receiver: FakeServer, status: int) -> None:
    receiver.inject(Fault(status=status))
    outcome = attempt(f"{receiver.url}/hook", number=3)
    assert outcome == RetryLater(8.0, f"HTTP {status}")  # rand=1: base 2 s * 2**(3 - 1)
    assert len(receiver.requests) == 1


def test_redirects_are_not_followed(receiver: FakeServer) -> None:
    assert isinstance(attempt(f"{receiver.url}/moved"), RetryLater)
    assert [request.path for request in receiver.requests] == ["/moved"]


def test_backoff_is_capped(receiver: FakeServer) -> None:
    receiver.inject(Fault(status=500), Fault(status=500))
    assert attempt(f"{receiver.url}/hook", number=30, first_attempt_at=NOW, now=NOW + 1) == RetryLater(
        300.0, "HTTP 500"
    )
    # and never past the broker's countdown cap (below the visibility timeout)
    assert attempt(f"{receiver.url}/hook", number=30, cap_s=60.0) == RetryLater(60.0, "HTTP 500")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_other_client_errors_are_final(receiver: FakeServer, status: int, caplog: pytest.LogCaptureFixture) -> None:
    receiver.inject(Fault(status=status))
    with pytest.raises(DeliveryFailed, match=f"HTTP {status}.*the receiver refused it; not retried"):
        attempt(f"{receiver.url}/hook")
    assert len(receiver.requests) == 1
    assert any(record.levelno == logging.ERROR for record in caplog.records)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(receiver: FakeServer, status: int) -> None:
    receiver.inject(Fault(status=status, headers={"Retry-After": "120"}))
    assert attempt(f"{receiver.url}/hook") == RetryLater(120.0, f"HTTP {status}")  # jitter alone: at most 2 s


def test_retry_after_past_the_window_gives_up(receiver: FakeServer) -> None:
    receiver.inject(Fault(status=429, headers={"Retry-After": "7200"}))
    with pytest.raises(DeliveryFailed, match="asked to wait 7200s, past the end of the 3600s retry window"):
        attempt(f"{receiver.url}/hook")


def test_the_last_retry_lands_inside_the_window(receiver: FakeServer) -> None:
    receiver.inject(Fault(status=500))
    assert attempt(f"{receiver.url}/hook", number=9, now=NOW + 3595) == RetryLater(5.0, "HTTP 500")


def test_gives_up_once_the_window_is_over(receiver: FakeServer) -> None:
    receiver.inject(Fault(status=500))
    with pytest.raises(DeliveryFailed, match=r"HTTP 500.*gave up: the 3600s retry window"):
        attempt(f"{receiver.url}/hook", number=12, now=NOW + 3600)
    assert len(receiver.requests) == 1


def test_a_timeout_is_retried(receiver: FakeServer) -> None:
    receiver.inject(Fault(delay_s=1.0))
    settings = LOOPBACK.model_copy(update={"timeout_s": 0.2})
    outcome = attempt(f"{receiver.url}/hook", settings=settings)
    assert outcome == RetryLater(2.0, "no answer within 0.2s")


def test_a_refused_connection_is_retried() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    outcome = attempt(f"http://127.0.0.1:{port}/hook")
    assert isinstance(outcome, RetryLater) and outcome.reason == "connection failed (ConnectionError)"


def test_a_name_resolving_to_a_blocked_address_is_never_sent_to(receiver: FakeServer) -> None:
    """``localhost`` passes the URL check (a name); the socket it connects to is refused before a byte is sent."""
    port = receiver.url.rsplit(":", 1)[1]
    with pytest.raises(
        InvalidRequest, match=r"127\.0\.0\.1, a loopback address.*stepper_webhooks\['allowed_networks'\]"
    ):
        attempt(f"http://localhost:{port}/hook", settings=WebhookSettings())
    assert receiver.requests == []


def test_a_refused_url_is_never_contacted(receiver: FakeServer) -> None:
    with pytest.raises(InvalidRequest, match="loopback"):
        attempt(f"{receiver.url}/hook", settings=WebhookSettings())
    assert receiver.requests == []


def test_without_the_secret_nothing_is_sent(receiver: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigError, match=r"STEPPER_WEBHOOK_SECRET is not set.*never sent unsigned"):
        attempt(f"{receiver.url}/hook", environ={})
    assert receiver.requests == []
    assert "STEPPER_WEBHOOK_SECRET is not set" in caplog.text


def test_the_secret_can_come_from_a_file(receiver: FakeServer, tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n", encoding="utf-8")
    attempt(f"{receiver.url}/hook", environ={"STEPPER_WEBHOOK_SECRET_FILE": str(path)})
    (request,) = receiver.requests
    assert verify(SECRET.encode(), request.headers["stepper-signature"], request.body, now=NOW + 1)


def test_logs_carry_neither_the_secret_nor_the_url_path(receiver: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="stepper")
    receiver.inject(Fault(status=500), Fault(status=404))
    url = f"{receiver.url}/hook?token=tok-in-the-query"
    attempt(url)
    with pytest.raises(DeliveryFailed) as raised:
        attempt(url)
    attempt(url)
    ours = "\n".join(record.getMessage() for record in caplog.records if record.name.startswith("stepper"))
    assert ours.count("webhook delivery-1") == 3
    for text in (ours, str(raised.value)):
        assert SECRET not in text and "tok-in-the-query" not in text and "/hook" not in text
    assert receiver.url in ours  # where it went: scheme, host and port


# --- the task -----------------------------------------------------------------------------------------


def test_the_task_fails_without_retrying_when_the_secret_is_missing(
    receiver: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stepper.tasks import deliver_webhook

    monkeypatch.delenv("STEPPER_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("STEPPER_WEBHOOK_SECRET_FILE", raising=False)
    kwargs = {
        "url": f"{receiver.url}/hook",
        "event": "task.failed",
        "payload": PAYLOAD,
        "delivery_id": "d-9",
        "first_attempt_at": time.time(),
    }
    result = deliver_webhook.apply(kwargs=kwargs)
    assert result.state == "FAILURE" and isinstance(result.result, ConfigError)
    assert receiver.requests == []
