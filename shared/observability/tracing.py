"""OpenTelemetry tracing of one service: server, httpx, Redis and (slow or failed) SQL spans.

Each app gets its own `TracerProvider` (resource `service.name`) instead of
the global one, so two apps in one test process keep their identities and
nothing here depends on import order. Context crosses service boundaries in
the W3C `traceparent` header (the default propagator), which the
instrumented httpx client injects and the instrumented app extracts: one
registration is one trace across both services.

Spans are exported over OTLP/HTTP only when an endpoint is configured
(`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`);
otherwise they are still created, so that audit events carry a trace id,
and dropped when they end. `OTEL_TRACES_EXPORTER` and `OTEL_SDK_DISABLED`
are honoured as the SDK's auto-configuration honours them.
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import Sequence
from typing import Any, Final

import httpx
from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp

from shared.db.reads import ReadSource
from shared.observability.metrics import ServiceMetrics
from shared.observability.server_span import ServerSpanMiddleware
from shared.observability.sql_spans import StatementRecorder, StatementSpans, url_attributes

__all__ = ["FASTAPI_TELEMETRY_OFF", "Tracing", "sdk_disabled"]

_log = logging.getLogger(__name__)
_NO_METRICS = NoOpMeterProvider()  # Prometheus has the numbers; no OTel metrics pipeline
# For `FastAPI(telemetry=...)`: FastAPI's own OpenTelemetry hooks answer to
# the *global* providers, asked on every request. Tracing here is per app
# (`Tracing`, TRACING_ENABLED) and metrics are Prometheus, so both services
# turn them off: a globally configured provider never adds a second trace.
FASTAPI_TELEMETRY_OFF: Final[TelemetryConfig] = {"tracing": False, "metrics": False, "logs": False}


class _Resource(Resource):
    """A `Resource` that hashes once.

    The OTLP encoder groups spans by resource, hashing it for every span,
    and `Resource.__hash__` is a sorted `json.dumps` of its attributes: about
    a tenth of the export cost. The attributes are immutable
    (`BoundedAttributes(immutable=True)`), so the hash can be kept.
    """

    _hash: int

    @classmethod
    def of(cls, resource: Resource) -> _Resource:
        frozen = cls(resource.attributes, resource.schema_url)
        frozen._hash = Resource.__hash__(frozen)
        return frozen

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return Resource.__eq__(self, other)


class _WhileReceived(Sampler):
    """`inner`'s decision while any span processor is attached, else DROP.

    For leaf client spans only (Redis commands, SQL statements). Without an
    exporter, tracing is on for its ids alone (audit events and logs carry
    the server span's trace id), and each Redis span was still built
    attribute by attribute, under a lock, then dropped: a sixth of a refresh
    rotation's CPU (bench/README.md, target 5). Nothing propagates a leaf's
    context, so dropping it changes no other span; httpx spans, whose
    context travels in `traceparent`, keep the provider's own sampler.
    """

    def __init__(self, processors: Sequence[SpanProcessor], inner: Sampler) -> None:
        self._processors = processors  # the live list: attaching one turns spans on
        self._inner = inner

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if not self._processors:
            parent = trace.get_current_span(parent_context).get_span_context()
            return SamplingResult(Decision.DROP, None, parent.trace_state)
        return self._inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"WhileReceived{{{self._inner.get_description()}}}"


def sdk_disabled() -> bool:
    """OTEL_SDK_DISABLED=true: no spans, no OTLP audit logs (the SDK's own switch)."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _span_exporters(otlp_endpoint: str) -> list[SpanExporter]:
    """The exporters OTEL_TRACES_EXPORTER names, as the SDK's auto-configuration reads it.

    `otlp` (the default) is OTLP/HTTP to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    taken as given, else to `<otlp_endpoint>/v1/traces`. Left unset, with
    neither endpoint, nothing is exported (spans are still made for their
    ids); named explicitly, it falls back to the exporter's default
    endpoint, as the SDK does. `console` prints spans; `none` turns export
    off. Other names (`zipkin`, gRPC-only setups) are not installed here.
    """
    named = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    names = [n.strip() for n in (named or "otlp").split(",") if n.strip()]
    if "none" in names:
        return []
    traces_endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    exporters: list[SpanExporter] = []
    for name in dict.fromkeys(names):
        if name == "otlp":
            if traces_endpoint:
                url: str | None = traces_endpoint
            elif otlp_endpoint:
                url = f"{otlp_endpoint.rstrip('/')}/v1/traces"
            elif named:
                url = None  # the exporter's own default (localhost:4318)
            else:
                continue
            # Imported only when used (protobuf and the HTTP exporter add to
            # every cold start otherwise).
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            # The SDK's exporter as it ships: its encoder, and a requests
            # session that honours the proxy, CA bundle and netrc variables
            # as any requests client does (bench/README.md, optimisation 24).
            exporters.append(OTLPSpanExporter(endpoint=url))
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        else:
            _log.warning("OTEL_TRACES_EXPORTER: %r is not supported here; ignored", name)
    return exporters


class Tracing:
    """Tracer provider and instrumentation for one service.

    Args:
        service_name: `service.name` of every span.
        version: `service.version`.
        otlp_endpoint: OTLP/HTTP base URL; empty: no exporter at all.
        sql_min_ms: a successful SQL statement makes a span only when it took
            at least this long (`shared/observability/sql_spans.py`); 0: every one.
    """

    def __init__(
        self,
        *,
        service_name: str,
        version: str,
        otlp_endpoint: str = "",
        sql_min_ms: float = 0.0,
    ) -> None:
        resource = _Resource.of(
            Resource.create({SERVICE_NAME: service_name, SERVICE_VERSION: version})
        )
        self.provider = TracerProvider(resource=resource)
        # The server span middleware hands its spans to these directly.
        self._processors: list[SpanProcessor] = []
        # Redis and SQL spans: same processors, but sampled only while one is
        # attached (see `_WhileReceived`). Shut down through `self.provider`.
        self._leaf_provider = TracerProvider(
            resource=resource,
            sampler=_WhileReceived(self._processors, self.provider.sampler),
            shutdown_on_exit=False,
        )
        self._sql_min_ms = sql_min_ms
        # Engines and read sources waiting for a processor before they are
        # traced (`instrument_engine`, `instrument_reads`).
        self._engines: list[AsyncEngine] = []
        self._reads: list[ReadSource] = []
        self._redis: list[Any] = []
        exporters = _span_exporters(otlp_endpoint)
        self.exporting = bool(exporters)
        for exporter in exporters:
            # Batching: export happens on a background thread, never on the event loop.
            self.add_processor(BatchSpanProcessor(exporter))

    def add_processor(self, processor: SpanProcessor) -> None:
        """Attach another span processor (tests add an in-memory exporter)."""
        self.provider.add_span_processor(processor)
        self._leaf_provider.add_span_processor(processor)
        self._processors.append(processor)
        engines, self._engines = self._engines, []
        for engine in engines:
            self._trace_engine(engine)
        sources, self._reads = self._reads, []
        for reads in sources:
            self._trace_reads(reads)
        clients, self._redis = self._redis, []
        for client in clients:
            self._trace_redis(client)

    def instrument_app(self, app: FastAPI, *, metrics: ServiceMetrics | None = None) -> None:
        """Trace every request of `app` (`ServerSpanMiddleware`, outermost).

        Args:
            metrics: record the request metrics in the same middleware (the
                app then must not have `HttpMetricsMiddleware` as well).
        """
        build = app.build_middleware_stack
        provider, processors = self.provider, self._processors

        def build_middleware_stack(_: FastAPI) -> ASGIApp:
            # Around ServerErrorMiddleware, not inside it: the 500 it sends
            # for an unhandled exception, and its error log, are in the span.
            return ServerSpanMiddleware(
                build(), provider=provider, processors=processors, metrics=metrics
            )

        app.build_middleware_stack = types.MethodType(build_middleware_stack, app)  # type: ignore[method-assign]

    def instrument_httpx(self, client: httpx.AsyncClient) -> None:
        HTTPXClientInstrumentor.instrument_client(
            client, tracer_provider=self.provider, meter_provider=_NO_METRICS
        )

    def instrument_redis(self, client: Any) -> None:
        """Trace `client`'s commands, from when a span processor is attached.

        Like `instrument_engine`: without a processor every Redis span is
        dropped, yet the instrumentation's wrapper still ran around each
        command (~2% of a refresh's CPU as shipped, bench/README.md P6).
        """
        if self._processors:
            self._trace_redis(client)
        else:
            self._redis.append(client)

    def _trace_redis(self, client: Any) -> None:
        # The instrumentation writes "COMMAND ? ?" as the statement: argument
        # values (keys, hashes, IPs) never reach a span.
        RedisInstrumentor.instrument_client(client, tracer_provider=self._leaf_provider)

    def instrument_engine(self, engine: AsyncEngine) -> None:
        """Trace `engine`'s statements, from when a span processor is attached.

        Without a processor nothing would receive a SQL span, yet listeners
        on each statement cost CPU for no output (7% of a profile read's as
        shipped with the instrumentation's: bench/README.md, "Changes
        measured on PostgreSQL", P3). So they are registered only once a
        processor is there to receive. Which statements then make spans:
        `shared/observability/sql_spans.py` (slow or failed ones, P4).
        """
        if self._processors:
            self._trace_engine(engine)
        else:
            self._engines.append(engine)

    def instrument_reads(self, reads: ReadSource) -> None:
        """Trace the single-row reads that bypass the engine (`shared.db.reads`),
        with the same rules as the engine's statements, from when a span
        processor is attached, for the same reason as `instrument_engine`."""
        if reads.traced_url is None:
            return
        if self._processors:
            self._trace_reads(reads)
        else:
            self._reads.append(reads)

    def _trace_reads(self, reads: ReadSource) -> None:
        url = reads.traced_url
        assert url is not None
        reads.trace(
            StatementRecorder(
                url_attributes(url),
                provider=self.provider,
                processors=self._processors,
                min_duration_ms=self._sql_min_ms,
            )
        )

    def _trace_engine(self, engine: AsyncEngine) -> None:
        # Statements are recorded with their placeholders, never parameters.
        # The leaf provider's processors are this provider's; its sampler
        # only adds "drop while none is attached", which holds here.
        StatementSpans(
            engine.sync_engine,
            provider=self.provider,
            processors=self._processors,
            min_duration_ms=self._sql_min_ms,
        )

    def shutdown(self) -> None:
        """Flush and stop the exporter (blocks briefly; call at shutdown)."""
        try:
            self.provider.shutdown()
        except Exception:
            _log.warning("span exporter shutdown failed", exc_info=True)
