"""Deadlines and cancellation of vendor calls against a real loopback server that streams slowly.

The server's event generator notes when the connection it writes to went away (the handler stops iterating
it), so each test sees the worker really hung up, not only that the client raised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from stepper.errors import Cancelled, DeadlineExceeded, FirstTokenTimeout, Timeout
from stepper.infra.cancellation import TaskScope, current_task
from stepper.providers.http import HttpClient
from stepper.settings import ProviderSettings
from tests.support.fake_http import FakeServer, Reply, Request, running

EVENTS = 100
INTERVAL_S = 0.1  # the whole stream would take ten seconds


@dataclass
class SlowStream:
    """Streams ``EVENTS`` events, one per ``INTERVAL_S``, after ``first_delay_s``; notes when it stopped."""

    first_delay_s: float = 0.0
    sent: int = 0
    stopped_at: list[float] = field(default_factory=list)

    def events(self) -> Iterator[tuple[str | None, str]]:
        try:
            time.sleep(self.first_delay_s)
            for number in range(EVENTS):
                yield None, f'{{"n": {number}}}'
                self.sent += 1
                time.sleep(INTERVAL_S)
        finally:
            self.stopped_at.append(time.monotonic())


@pytest.fixture
def stream() -> SlowStream:
    return SlowStream()


@pytest.fixture
def server(stream: SlowStream) -> Iterator[FakeServer]:
    fake = FakeServer()
    fake.route("POST", "/stream", lambda request: Reply(events=stream.events()))
    fake.route("POST", "/late", late_answer)
    yield from running(fake)


def late_answer(request: Request) -> Reply:
    time.sleep(3)
    return Reply(200, {"late": True})


def client(server: FakeServer, **timeouts: float) -> HttpClient:
    spec = {"name": "acme", "class": "x.y:Z", "connect_timeout_s": 1.0, **timeouts}
    return HttpClient(ProviderSettings.model_validate(spec), server.url, None)


def read_all(http: HttpClient, answered: bool = True) -> int:
    count = 0
    for _event in http.stream("POST", "/stream", {}, {}):
        if answered:
            http.answer_started()
        count += 1
    return count


def stopped_within(stream: SlowStream, since: float, bound_s: float) -> bool:
    deadline = time.monotonic() + bound_s
    while not stream.stopped_at and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(stream.stopped_at) and stream.stopped_at[0] - since < bound_s


def test_cancelling_the_task_hangs_up_on_the_vendor_mid_stream(server: FakeServer, stream: SlowStream) -> None:
    scope = TaskScope("task-1")
    token = current_task.set(scope)
    cancelled_at: list[float] = []

    def cancel() -> None:
        cancelled_at.append(time.monotonic())
        scope.cancel("revoked")

    threading.Timer(0.5, cancel).start()
    try:
        with pytest.raises(Cancelled, match="cancelled during its call to acme"):
            read_all(client(server))
    finally:
        current_task.reset(token)
    assert time.monotonic() - cancelled_at[0] < 5  # not at the end of the ten-second stream
    assert stopped_within(stream, cancelled_at[0], 5)
    assert stream.sent < EVENTS / 2


def test_a_stream_without_answer_text_is_cut_at_the_first_token_deadline(server: FakeServer) -> None:
    # Events keep coming (no socket timeout fires), but none carries text: the deadline cuts the call.
    with pytest.raises(FirstTokenTimeout, match=r"first_token_timeout_s=0\.5"):
        read_all(client(server, first_token_timeout_s=0.5), answered=False)


def test_a_silent_server_misses_the_first_token_deadline(server: FakeServer, stream: SlowStream) -> None:
    stream.first_delay_s = 3
    with pytest.raises(FirstTokenTimeout):
        read_all(client(server, first_token_timeout_s=0.5))


def test_a_plain_answer_later_than_the_first_token_deadline(server: FakeServer) -> None:
    with pytest.raises(FirstTokenTimeout):
        client(server, first_token_timeout_s=0.5).post_json("/late", {}, {})


def test_an_answering_stream_is_cut_at_its_total_deadline(server: FakeServer, stream: SlowStream) -> None:
    started = time.monotonic()
    with pytest.raises(Timeout, match=r"total_timeout_s=0\.8") as raised:
        read_all(client(server, total_timeout_s=0.8))
    assert not isinstance(raised.value, FirstTokenTimeout)
    assert stopped_within(stream, started, 5)


def test_the_tasks_deadline_cuts_the_call(server: FakeServer) -> None:
    token = current_task.set(TaskScope(deadline_at=time.monotonic() + 0.6))
    try:
        with pytest.raises(DeadlineExceeded, match="deadline_s passed during its call to acme"):
            read_all(client(server))
    finally:
        current_task.reset(token)
