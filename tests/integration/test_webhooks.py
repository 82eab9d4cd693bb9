"""Outcome webhooks end to end: ``schedule_webhook`` in this process, a real worker on the ``callbacks`` queue,
and a loopback receiver that checks every signature with :func:`stepper.outcomes.webhooks.verify`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from stepper.errors import ChainExhausted
from stepper.outcomes.webhooks import outcome_payload, schedule_webhook, verify
from tests.integration.conftest import Fleet
from tests.support.fake_http import FakeServer, Fault, Reply, Request, running
from tests.support.waiting import wait_until

SECRET = "whsec-integration-5f1d2c9a8b7e"
WEBHOOK_SETTINGS = {
    "allowed_networks": ["127.0.0.1/32"],
    "retry_for_s": 30,
    # Small waits so that retries happen within the test; the logic is the production one.
    "backoff_base_s": 0.05,
    "backoff_cap_s": 0.2,
}


@pytest.fixture(scope="module")
def fleet(start_fleet: Callable[..., Fleet]) -> Fleet:
    return start_fleet({"stepper_webhooks": WEBHOOK_SETTINGS}, name="webhooks", env={"STEPPER_WEBHOOK_SECRET": SECRET})


@pytest.fixture
def receiver() -> Iterator[FakeServer]:
    """Answers 200 to a request whose signature verifies, 401 otherwise; records every request."""
    fake = FakeServer()

    def hook(request: Request) -> Reply:
        signed = verify(SECRET.encode(), request.headers.get("stepper-signature", ""), request.body)
        return Reply(200, {"ok": True}) if signed else Reply(401, {"error": "bad signature"})

    fake.route("POST", "/hook", hook)
    yield from running(fake)


def assert_signed(request: Request) -> None:
    assert verify(SECRET.encode(), request.headers["stepper-signature"], request.body)


def wait_for_log(fleet: Fleet, text: str) -> str:
    """The first worker log line containing ``text``, once there is one."""
    wait_until(lambda: text in fleet.worker.log(), f"{text!r} in the worker log")
    return next(line for line in fleet.worker.log().splitlines() if text in line)


def send_outcome(fleet: Fleet, receiver: FakeServer, *faults: Fault, attempts: int | None = None) -> str:
    """Schedule a success outcome to ``receiver``, which answers with ``faults`` first, then 200 to a valid
    signature; wait for ``attempts`` requests (one more than the faults unless said) and return the delivery id."""
    attempts = len(faults) + 1 if attempts is None else attempts
    receiver.inject(*faults)
    schedule_webhook(f"{receiver.url}/hook", "task.succeeded", outcome_payload("t", "chat", result={}), app=fleet.app)
    wait_until(lambda: len(receiver.requests) == attempts, f"{attempts} attempt(s)")
    return receiver.requests[0].headers["stepper-delivery"]


def test_an_outcome_arrives_signed_with_the_exact_payload(fleet: Fleet, receiver: FakeServer) -> None:
    payload = outcome_payload("task-ok", "chat", result={"kind": "chat", "output": {"message": "héllo"}})
    schedule_webhook(f"{receiver.url}/hook", "task.succeeded", payload, app=fleet.app)
    wait_until(lambda: len(receiver.requests) == 1, "the delivery")

    (request,) = receiver.requests
    assert_signed(request)
    assert request.json() == payload
    assert request.headers["stepper-event"] == "task.succeeded"
    assert request.headers["content-type"] == "application/json"
    delivery_id = request.headers["stepper-delivery"]
    wait_for_log(fleet, f"webhook {delivery_id} to {receiver.url} delivered (HTTP 200, attempt 1)")


def test_a_failing_receiver_gets_the_same_delivery_until_it_accepts(fleet: Fleet, receiver: FakeServer) -> None:
    receiver.inject(Fault(status=500), Fault(status=500))
    payload = outcome_payload("task-failed", "ocr", error=ChainExhausted("every provider failed"))
    schedule_webhook(f"{receiver.url}/hook", "task.failed", payload, app=fleet.app)
    wait_until(lambda: len(receiver.requests) == 3, "three attempts")

    delivery_ids = {request.headers["stepper-delivery"] for request in receiver.requests}
    assert len(delivery_ids) == 1
    for request in receiver.requests:
        assert_signed(request)  # re-signed at each attempt, each valid
        assert request.json() == payload
        assert request.headers["stepper-event"] == "task.failed"
    (delivery_id,) = delivery_ids
    wait_for_log(fleet, f"webhook {delivery_id} to {receiver.url} delivered (HTTP 200, attempt 3)")
    assert len(receiver.requests) == 3  # the third attempt was the last: the task returned after it


def test_a_callback_on_a_network_not_allowed_is_never_contacted(fleet: Fleet) -> None:
    """127.0.0.2 is loopback too, but only 127.0.0.1/32 is allowed: refused before any connection."""
    outside = FakeServer(host="127.0.0.2")
    outside.route("POST", "/hook", lambda request: Reply(200, {"ok": True}))
    outside.start()
    try:
        schedule_webhook(
            f"{outside.url}/hook", "task.succeeded", outcome_payload("t", "chat", result={}), app=fleet.app
        )
        refusal = wait_for_log(fleet, f"to {outside.url} refused")
        assert outside.requests == []
    finally:
        outside.stop()
    assert "127.0.0.2 is a loopback address" in refusal and "stepper_webhooks['allowed_networks']" in refusal


def test_a_receiver_refusal_is_final(fleet: Fleet, receiver: FakeServer) -> None:
    delivery_id = send_outcome(fleet, receiver, Fault(status=410), attempts=1)
    line = wait_for_log(fleet, f"webhook {delivery_id} to {receiver.url} failed (HTTP 410)")
    assert "ERROR" in line and "the receiver refused it; not retried" in line
    assert len(receiver.requests) == 1  # the task ended after logging that line


def test_the_secret_never_appears_in_the_worker_log(fleet: Fleet, receiver: FakeServer) -> None:
    delivery_id = send_outcome(fleet, receiver, Fault(status=503))
    wait_for_log(fleet, f"webhook {delivery_id} to {receiver.url} delivered")

    log = fleet.worker.log()
    assert SECRET not in log
    assert "[redacted]" not in log  # nothing even tried to log it (the redactor would have hidden it)
    assert "/hook" not in log  # nor the callback's path, which may carry a receiver's token
