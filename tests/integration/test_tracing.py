"""A trace that starts in the producer continues in a real worker, which exports it over OTLP/HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stepper.infra import tracing
from tests.integration.conftest import COUNTING_CHAINS, Fleet
from tests.support.fake_http import FakeServer, Reply, running


@pytest.fixture
def collector() -> Iterator[FakeServer]:
    """An OTLP/HTTP receiver on loopback, keeping each export it is sent."""
    fake = FakeServer()
    fake.route("POST", "/v1/traces", lambda request: Reply(200, b"", {"Content-Type": "application/x-protobuf"}))
    yield from running(fake)


def exported_spans(collector: FakeServer) -> list[tuple[str, str, str]]:
    """(name, trace id, parent span id) of every span the collector received."""
    found = []
    for request in collector.requests:
        export = ExportTraceServiceRequest.FromString(request.body)
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                found += [(span.name, span.trace_id.hex(), span.parent_span_id.hex()) for span in scope.spans]
    return found


def test_the_worker_continues_the_producers_trace(
    start_fleet: Callable[..., Fleet], collector: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = start_fleet(
        {"stepper_chains": COUNTING_CHAINS},
        name="traced",
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100"},
    )
    producer_spans = InMemorySpanExporter()
    monkeypatch.setattr(tracing, "_configured_pid", None)
    monkeypatch.setattr(tracing, "_tracer", None)
    tracing.setup(producer_spans)
    with tracing.span("stepper.submit", {"stepper.kind": "chat"}):
        headers: dict[str, str] = {}
        tracing.inject(headers)
        result = fleet.app.send_task(
            "stepper.chat", kwargs={"messages": [{"role": "user", "content": "trace me"}]}, headers=headers
        )
    result.get(timeout=30)
    (submit,) = producer_spans.get_finished_spans()
    trace_id = format(submit.context.trace_id, "032x")

    deadline = time.monotonic() + 30
    while not {name for name, _, _ in exported_spans(collector)} >= {"stepper.task", "stepper.provider"}:
        assert time.monotonic() < deadline, exported_spans(collector)
        time.sleep(0.2)
    spans = {name: (trace, parent) for name, trace, parent in exported_spans(collector)}
    assert spans["stepper.task"] == (trace_id, format(submit.context.span_id, "016x"))
    assert spans["stepper.provider"][0] == trace_id
