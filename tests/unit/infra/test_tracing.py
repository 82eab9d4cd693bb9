"""Tracing: nothing when off; spans and W3C trace context into provider requests when on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stepper.infra import tracing
from stepper.providers.http import HttpClient
from stepper.settings import ProviderSettings
from tests.support.fake_http import FakeServer, Reply, running


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    monkeypatch.setattr(tracing, "_configured_pid", None)
    monkeypatch.setattr(tracing, "_tracer", None)
    assert tracing.setup(exporter)
    yield exporter


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    fake.route("POST", "/echo", lambda request: Reply(200, {}))
    yield from running(fake)


def test_off_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in tracing.ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tracing, "_configured_pid", None)
    monkeypatch.setattr(tracing, "_tracer", None)
    assert tracing.setup() is False
    headers: dict[str, str] = {}
    tracing.inject(headers)
    with tracing.span("anything") as current:
        assert current is None
    assert headers == {}


def test_provider_requests_carry_the_trace(spans: InMemorySpanExporter, server: FakeServer) -> None:
    settings = ProviderSettings.model_validate({"name": "acme", "class": "x.y:Z"})
    with tracing.span("stepper.task", {"stepper.kind": "chat"}):
        HttpClient(settings, server.url, None).post_json("/echo", {}, {})
    (task,) = spans.get_finished_spans()
    trace_id = format(task.context.trace_id, "032x")
    traceparent = server.requests[0].headers["traceparent"]
    assert traceparent.split("-")[1] == trace_id
    assert task.attributes is not None and task.attributes["stepper.kind"] == "chat"


def test_a_span_continues_the_trace_in_incoming_headers(spans: InMemorySpanExporter) -> None:
    incoming = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with tracing.span("stepper.task", parent=incoming):
        pass
    (task,) = spans.get_finished_spans()
    assert format(task.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert task.parent is not None and format(task.parent.span_id, "016x") == "b7ad6b7169203331"
