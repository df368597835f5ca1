"""OpenTelemetry tracing of one service: FastAPI, httpx, Redis and SQL spans.

Each app gets its own `TracerProvider` (resource `service.name`) instead of
the global one, so two apps in one test process keep their identities and
nothing here depends on import order. Context crosses service boundaries in
the W3C `traceparent` header (the default propagator), which the
instrumented httpx client injects and the instrumented app extracts: one
registration is one trace across both services.

Spans are exported over OTLP/HTTP only when an endpoint is configured
(`OTEL_EXPORTER_OTLP_ENDPOINT`); otherwise they are still created, so that
audit events carry a trace id, and dropped when they end.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["Tracing"]

_log = logging.getLogger(__name__)
_NO_METRICS = NoOpMeterProvider()  # Prometheus has the numbers; no OTel metrics pipeline
# Probes and scrapes would be most of the spans and tell nothing.
_EXCLUDED_URLS = "/metrics,/healthz,/readyz"


class Tracing:
    """Tracer provider and instrumentation for one service.

    Args:
        service_name: `service.name` of every span.
        version: `service.version`.
        otlp_endpoint: OTLP/HTTP base URL; empty: no exporter at all.
    """

    def __init__(self, *, service_name: str, version: str, otlp_endpoint: str = "") -> None:
        resource = Resource.create({SERVICE_NAME: service_name, SERVICE_VERSION: version})
        self.provider = TracerProvider(resource=resource)
        self.exporting = bool(otlp_endpoint)
        if otlp_endpoint:
            # Imported only when used (protobuf and the HTTP exporter add to
            # every cold start otherwise).
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces")
            # Batching: export happens on a background thread, never on the event loop.
            self.provider.add_span_processor(BatchSpanProcessor(exporter))

    def add_processor(self, processor: SpanProcessor) -> None:
        """Attach another span processor (tests add an in-memory exporter)."""
        self.provider.add_span_processor(processor)

    def instrument_app(self, app: FastAPI) -> None:
        # No request/response headers are captured (the default): they hold
        # bearer tokens. "receive"/"send" sub-spans add cost and no insight.
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            meter_provider=_NO_METRICS,
            excluded_urls=_EXCLUDED_URLS,
            exclude_spans=["receive", "send"],
        )

    def instrument_httpx(self, client: httpx.AsyncClient) -> None:
        HTTPXClientInstrumentor.instrument_client(
            client, tracer_provider=self.provider, meter_provider=_NO_METRICS
        )

    def instrument_redis(self, client: Any) -> None:
        # The instrumentation writes "COMMAND ? ?" as the statement: argument
        # values (keys, hashes, IPs) never reach a span.
        RedisInstrumentor.instrument_client(client, tracer_provider=self.provider)

    def instrument_engine(self, engine: AsyncEngine) -> None:
        # EngineTracer directly: SQLAlchemyInstrumentor().instrument() is a
        # process-wide singleton and would trace only the first app's engine.
        # Statements are recorded with their placeholders, never parameters.
        tracer = self.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
        usage = _NO_METRICS.get_meter(__name__).create_up_down_counter("db.client.connections")
        EngineTracer(tracer, engine.sync_engine, usage)  # type: ignore[no-untyped-call]

    def shutdown(self) -> None:
        """Flush and stop the exporter (blocks briefly; call at shutdown)."""
        try:
            self.provider.shutdown()
        except Exception:
            _log.warning("span exporter shutdown failed", exc_info=True)
