"""OpenTelemetry traces, on when the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``…_TRACES_ENDPOINT``) is
set, and then exported over OTLP/HTTP; otherwise ``TRACER`` stays None and nothing of OpenTelemetry is even
imported (every helper here returns at once).

Spans (GenAI semantic conventions): the HTTP server span of each request (observability/http.py); a run's
execution is an ``invoke_agent`` span, each model call a ``chat`` span with ``gen_ai.usage.*``, each
server-side tool an ``execute_tool`` span. A run carries the W3C ``traceparent`` of the request that created
it (``runs.trace_context``), so a worker in another process continues the same trace. Message content is not
recorded (``ASSISTD_TRACE_CONTENT`` is not implemented: nothing to switch on).
"""

from __future__ import annotations

import os
from typing import Any

TRACER: Any = None  # an opentelemetry Tracer once setup() found an endpoint
_propagator: Any = None


def wanted() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower() == "none":
        return False
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def setup(service_name: str = "assistd") -> None:
    """Once per process (serve, worker). OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES are honoured."""
    global TRACER, _propagator
    if TRACER is not None or not wanted():
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    TRACER = trace.get_tracer("assistd")
    _propagator = TraceContextTextMapPropagator()


def shutdown() -> None:
    """Flush what is buffered (on process exit)."""
    if TRACER is None:
        return
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    flush = getattr(provider, "shutdown", None)
    if flush is not None:
        flush()


def extract(carrier: dict[str, str]) -> Any:
    return _propagator.extract(carrier) if _propagator is not None else None


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, to store on a run created now."""
    if _propagator is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def start_span(name: str, *, kind: str = "INTERNAL", parent: Any = None, attributes: dict[str, Any] | None = None,
               start_time: int | None = None) -> Any:
    from opentelemetry.trace import SpanKind

    return TRACER.start_span(name, context=parent, kind=getattr(SpanKind, kind), attributes=attributes,
                             start_time=start_time)


def attach(span: Any) -> Any:
    """Makes ``span`` current in this task (child spans hang under it); returns the token for ``detach``."""
    from opentelemetry import context as otel_context
    from opentelemetry.trace import set_span_in_context

    return otel_context.attach(set_span_in_context(span))


def detach(token: Any) -> None:
    from opentelemetry import context as otel_context

    otel_context.detach(token)


def end(span: Any, *, error: str | None = None) -> None:
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("error.type", error)
        span.set_status(Status(StatusCode.ERROR))
    span.end()
