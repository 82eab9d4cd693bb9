"""Optional OpenTelemetry tracing (``pip install 'stepper-fleet[tracing]'``).

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set and the packages import; then
spans cover ``stepper.submit`` in the producer, ``stepper.task`` in the worker and ``stepper.provider`` for
each attempt, exported over OTLP/HTTP (Jaeger and Tempo read it). The W3C ``traceparent`` travels from the
producer in the message's headers to the worker, and from there into every outgoing provider request.
When off, each hook is a check of one module variable: no import, no allocation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

_tracer: Any = None
_configured_pid: int | None = None

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def setup(exporter: Any = None) -> bool:
    """Turn tracing on in this process if an endpoint is configured (or an exporter given, for tests)."""
    global _tracer, _configured_pid  # noqa: PLW0603  (one tracer per process, set once)
    if _configured_pid == os.getpid():
        return _tracer is not None
    _configured_pid = os.getpid()
    if exporter is None and not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        return False
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "stepper")})
    )
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _tracer = provider.get_tracer("stepper")
    return True


_OFF = nullcontext()


def span(
    name: str, attributes: Mapping[str, Any] | None = None, parent: Mapping[str, str] | None = None
) -> AbstractContextManager[Any]:
    """A span named ``name`` (a child of the context in ``parent`` headers, if given); a shared no-op when off."""
    if _tracer is None:
        return _OFF
    return _traced(name, attributes, parent)


@contextmanager
def _traced(name: str, attributes: Mapping[str, Any] | None, parent: Mapping[str, str] | None) -> Iterator[Any]:
    from opentelemetry import propagate

    context = propagate.extract(parent) if parent else None
    with _tracer.start_as_current_span(name, context=context, attributes=dict(attributes or {})) as current:
        yield current


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current trace context (``traceparent``) to outgoing headers; nothing when off."""
    if _tracer is not None:
        from opentelemetry import propagate

        propagate.inject(headers)


def flush() -> None:
    if _tracer is not None:
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        if hasattr(provider, "force_flush"):
            provider.force_flush()
