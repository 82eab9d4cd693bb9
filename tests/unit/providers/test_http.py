"""The shared HTTP layer against a real loopback server: status mapping, Retry-After, faults, SSE, redaction."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from urllib3.util import Url, parse_url

from stepper.errors import (
    AuthError,
    FirstTokenTimeout,
    RateLimited,
    TruncatedOutput,
    Unavailable,
    UnsupportedInput,
)
from stepper.providers import transport
from stepper.providers.http import HttpClient, SseEvent, iter_sse, parse_duration, parse_retry_after
from stepper.settings import ProviderSettings
from tests.support.fake_http import DROPPED_MIDWAY, FakeServer, Fault, Reply, running
from tests.support.tls import Certificate, self_signed

SECRET = "sk-test-super-secret-0123456789"


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    fake.route("POST", "/echo", lambda request: Reply(200, {"you_sent": request.json()}))
    fake.route(
        "POST",
        "/events",
        lambda request: Reply(events=[(None, '{"n": 1}'), ("update", '{"n": 2}'), (None, "[DONE]")]),
    )
    yield from running(fake)


def client(server: FakeServer, timeout_s: float = 2.0) -> HttpClient:
    settings = ProviderSettings.model_validate(
        {"name": "acme", "class": "x.y:Z", "first_token_timeout_s": timeout_s, "connect_timeout_s": 1.0}
    )
    return HttpClient(settings, server.url, SECRET)


def test_post_json_round_trip(server: FakeServer) -> None:
    assert client(server).post_json("/echo", {"a": 1}, {"Authorization": "Bearer x"}) == {"you_sent": {"a": 1}}
    assert server.requests[0].headers["authorization"] == "Bearer x"


def test_a_vendor_s_url_is_parsed_once_not_at_every_call(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []

    def counting(url: str) -> Url:
        parsed.append(url)
        return parse_url(url)

    monkeypatch.setattr(transport, "parse_url", counting)
    transport._parsed.cache_clear()
    calls = client(server)
    answers = [calls.post_json("/echo", {"n": n}, {}) for n in range(3)]
    assert answers == [{"you_sent": {"n": n}} for n in range(3)]
    assert parsed == [f"{server.url}/echo"]
    assert [request.path for request in server.requests] == ["/echo"] * 3


def test_environment_proxy_is_honoured(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url)
    settings = ProviderSettings.model_validate({"name": "acme", "class": "x.y:Z", "connect_timeout_s": 1.0})
    proxied = HttpClient(settings, "http://vendor.invalid", SECRET)
    assert proxied.post_json("/echo", {"a": 1}, {}) == {"you_sent": {"a": 1}}
    assert server.requests[0].headers["host"] == "vendor.invalid"


def test_no_proxy_is_honoured(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("no_proxy", raising=False)
    assert client(server).post_json("/echo", {"a": 1}, {}) == {"you_sent": {"a": 1}}


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, UnsupportedInput),  # a refusal naming no known cause: this provider's limit, not the caller's fault
        (401, AuthError),
        (403, AuthError),
        (404, UnsupportedInput),
        (422, UnsupportedInput),
        (429, RateLimited),
        (500, Unavailable),
        (502, Unavailable),
        (503, Unavailable),
    ],
)
def test_status_codes_map_onto_the_error_tree(server: FakeServer, status: int, error: type[Exception]) -> None:
    server.inject(Fault(status=status, body={"error": {"message": f"vendor says {status}"}}))
    with pytest.raises(error, match=re.escape(f"acme answered {status}: vendor says {status}")):
        client(server).post_json("/echo", {}, {})


def test_retry_after_seconds_and_http_date_are_both_read(server: FakeServer) -> None:
    server.inject(Fault(status=429, body={"error": "slow down"}, headers={"Retry-After": "7"}))
    with pytest.raises(RateLimited) as seconds:
        client(server).post_json("/echo", {}, {})
    assert seconds.value.retry_after_s == 7.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    server.inject(Fault(status=503, body=b"busy", headers={"Retry-After": later}))
    with pytest.raises(Unavailable) as dated:
        client(server).post_json("/echo", {}, {})
    assert dated.value.retry_after_s is not None
    assert 25 <= dated.value.retry_after_s <= 30


def test_slow_answer_is_a_first_token_timeout(server: FakeServer) -> None:
    server.inject(Fault(delay_s=1.0))
    with pytest.raises(FirstTokenTimeout, match=r"no answer within first_token_timeout_s=0\.3"):
        client(server, timeout_s=0.3).post_json("/echo", {}, {})


def test_reset_connection_is_unavailable(server: FakeServer) -> None:
    server.inject(Fault(reset=True))
    with pytest.raises(Unavailable, match="could not be reached"):
        client(server).post_json("/echo", {}, {})


def test_truncated_body_is_truncated_output(server: FakeServer) -> None:
    server.inject(Fault(truncate=True))
    with pytest.raises(TruncatedOutput, match="in the middle"):
        client(server).post_json("/echo", {"a": "b" * 100}, {})


def test_refused_connection_is_unavailable_and_names_no_url() -> None:
    settings = ProviderSettings.model_validate({"name": "acme", "class": "x.y:Z", "connect_timeout_s": 1.0})
    dead = HttpClient(settings, f"http://127.0.0.1:9/?key={SECRET}", SECRET)
    with pytest.raises(Unavailable) as caught:
        dead.post_json("/echo", {}, {})
    assert SECRET not in str(caught.value)
    assert "127.0.0.1" not in str(caught.value)


def test_vendor_text_echoing_the_key_is_redacted(server: FakeServer) -> None:
    server.inject(Fault(status=401, body={"error": {"message": f"Incorrect API key provided: {SECRET}"}}))
    with pytest.raises(AuthError) as caught:
        client(server).post_json("/echo", {}, {})
    assert SECRET not in str(caught.value)
    assert "[redacted]" in str(caught.value)


def test_event_stream_is_parsed(server: FakeServer) -> None:
    events = list(client(server).stream("POST", "/events", {}, {}))
    assert events == [SseEvent("message", '{"n": 1}'), SseEvent("update", '{"n": 2}'), SseEvent("message", "[DONE]")]


def test_stream_dropped_midway_yields_its_whole_events_then_raises(server: FakeServer) -> None:
    server.inject(Fault(stop_stream_after=1))
    seen = []
    with pytest.raises(TruncatedOutput, match=DROPPED_MIDWAY):
        for event in client(server).stream("POST", "/events", {}, {}):
            seen.append(event.data)
    assert seen == ['{"n": 1}']


def test_stream_ended_early_yields_only_whole_events(server: FakeServer) -> None:
    server.inject(Fault(end_stream_after=1))
    assert [event.data for event in client(server).stream("POST", "/events", {}, {})] == ['{"n": 1}']


def test_parse_retry_after_edge_cases() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 60) == 60.0


def test_sse_multiline_data_comments_and_cut_off_event() -> None:
    lines = [": keep-alive", "event: delta", "data: one", "data: two", "", "data: cut off"]
    assert list(iter_sse(iter(lines))) == [SseEvent("delta", "one\ntwo")]


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=20), max_size=20))
def test_sse_round_trips_any_data_lines(values: list[str]) -> None:
    lines = [line for value in values for line in (f"data: {value}", "")]
    assert [event.data for event in iter_sse(iter(lines))] == [value for value in values]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5s", 0.5), ("", None), ("soon", None)],
)
def test_openai_rate_limit_durations_are_read(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


@pytest.mark.parametrize(
    ("headers", "wait_s"),
    [
        ({"Retry-After": "3", "retry-after-ms": "100"}, 3.0),  # the standard header wins
        ({"retry-after-ms": "250"}, 0.25),
        ({"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "6m0s"}, 360.0),
        ({}, None),
    ],
)
def test_a_429_carries_the_vendors_wait_in_whichever_header_it_used(
    server: FakeServer, headers: dict[str, str], wait_s: float | None
) -> None:
    server.inject(Fault(status=429, body={"error": {"message": "Rate limit reached"}}, headers=headers))
    with pytest.raises(RateLimited) as raised:
        client(server).post_json("/echo", {}, {})
    assert raised.value.retry_after_s == wait_s


def test_a_wait_stated_in_the_message_is_honoured_when_no_header_states_one(server: FakeServer) -> None:
    body = {
        "error": {
            "message": "Rate limit reached for gpt-4o-mini on tokens per min (TPM): Limit 200000, Used 199852. "
            "Please try again in 986ms.",
            "type": "tokens",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    server.inject(Fault(status=429, body=body))
    with pytest.raises(RateLimited) as raised:
        client(server).post_json("/echo", {}, {})
    assert raised.value.retry_after_s == pytest.approx(0.986)


def test_load_shedding_with_429_is_busy_not_broken(server: FakeServer) -> None:
    server.inject(Fault(status=429, body={"error": "Model is overloaded", "error_type": "overloaded"}))
    with pytest.raises(RateLimited, match="Model is overloaded") as raised:
        client(server).post_json("/echo", {}, {})
    assert not raised.value.trips_breaker


def _until_done(http: HttpClient) -> list[str]:
    """Read a stream as the adapters do: stop at the event that says the answer is whole, leaving the rest of
    the body (the terminating chunk) unread."""
    seen = []
    for event in http.stream("POST", "/events", {}, {}):
        seen.append(event.data)
        if event.data == "[DONE]":
            break
    return seen


def test_a_stream_read_to_its_last_event_leaves_its_connection_to_the_next_call(server: FakeServer) -> None:
    http = client(server)
    assert _until_done(http) == ['{"n": 1}', '{"n": 2}', "[DONE]"]
    assert _until_done(http) == ['{"n": 1}', '{"n": 2}', "[DONE]"]
    assert http.post_json("/echo", {"a": 1}, {}) == {"you_sent": {"a": 1}}
    assert len({request.peer for request in server.requests}) == 1  # one connection, kept alive


@pytest.mark.parametrize("fault", [Fault(stop_stream_after=1), Fault(end_stream_after=1)])
def test_a_stream_that_broke_or_ended_early_is_not_followed_on_its_connection_by_a_broken_call(
    server: FakeServer, fault: Fault
) -> None:
    server.inject(fault)
    http = client(server)
    with contextlib.suppress(TruncatedOutput):
        _until_done(http)
    assert _until_done(http) == ['{"n": 1}', '{"n": 2}', "[DONE]"]


def test_a_stream_abandoned_with_little_left_is_read_to_its_end_and_its_connection_kept(server: FakeServer) -> None:
    http = client(server)
    for _event in http.stream("POST", "/events", {}, {}):
        break  # the caller stops reading: the unread rest of the body must not meet the next request
    assert _until_done(http) == ['{"n": 1}', '{"n": 2}', "[DONE]"]
    assert len({request.peer for request in server.requests}) == 1


def slow_events() -> Iterator[tuple[str | None, str]]:
    yield None, '{"n": 1}'
    time.sleep(0.5)  # far past DRAIN_WAIT_S
    yield None, "[DONE]"


def trickling_events() -> Iterator[tuple[str | None, str]]:
    for n in range(500):  # an event every 2 ms for a second: each read is quick, the whole is not
        yield None, f'{{"n": {n}}}'
        time.sleep(0.002)


@pytest.mark.parametrize("events", [slow_events, trickling_events])
def test_a_stream_abandoned_while_its_server_goes_on_closes_its_connection(
    server: FakeServer, events: Callable[[], Iterator[tuple[str | None, str]]]
) -> None:
    server.route("POST", "/slow", lambda request: Reply(events=events()))
    http = client(server)
    for _event in http.stream("POST", "/slow", {}, {}):
        break
    assert _until_done(http) == ['{"n": 1}', '{"n": 2}', "[DONE]"]
    assert len({request.peer for request in server.requests}) == 2


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[FakeServer, Certificate]]:
    certificate = self_signed(tmp_path)
    fake = FakeServer(tls=certificate.server_context())
    fake.route("POST", "/events", lambda request: Reply(events=[(None, '{"n": 1}'), (None, "[DONE]")]))
    for running_fake in running(fake):
        yield running_fake, certificate


def test_streams_over_tls_trust_the_ca_bundle_and_share_one_handshake(
    tls_server: tuple[FakeServer, Certificate], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, certificate = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate.cert_path))
    http = client(server)
    for _ in range(3):
        assert _until_done(http) == ['{"n": 1}', "[DONE]"]
    assert len({request.peer for request in server.requests}) == 1


def test_a_vendor_whose_certificate_is_not_trusted_is_unavailable_saying_why(
    tls_server: tuple[FakeServer, Certificate], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = tls_server
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    expected = r"acme's TLS certificate is not trusted \(self.signed certificate\).*set REQUESTS_CA_BUNDLE"
    with pytest.raises(AuthError, match=expected):
        _until_done(client(server))
