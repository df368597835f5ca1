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
import types
from typing import Any, Final

import httpx
from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.http_metrics import UNMATCHED, route_template

__all__ = ["FASTAPI_TELEMETRY_OFF", "ServerSpanMiddleware", "Tracing"]

_log = logging.getLogger(__name__)
_NO_METRICS = NoOpMeterProvider()  # Prometheus has the numbers; no OTel metrics pipeline
# Probes and scrapes would be most of the spans and tell nothing.
# For `FastAPI(telemetry=...)`: FastAPI's own OpenTelemetry hooks answer to
# the *global* providers, asked on every request. Tracing here is per app
# (`Tracing`, TRACING_ENABLED) and metrics are Prometheus, so both services
# turn them off: a globally configured provider never adds a second trace.
FASTAPI_TELEMETRY_OFF: Final[TelemetryConfig] = {"tracing": False, "metrics": False, "logs": False}
_EXCLUDED_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


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


class ServerSpanMiddleware:
    """One span per HTTP request, named `METHOD /route/{template}`.

    Replaces `FastAPIInstrumentor` (bench/README.md, target 6). That one
    matched every route a second time before the request to name its span,
    built a dozen attributes (among them `http.url`, which carries the query
    string), and wrapped `send`: with no exporter at all it cost more than the
    whole uninstrumented request. Here the span starts named by the method,
    and the route template the router chose is written into the name and
    `http.route` when the response is done (what the semantic conventions
    allow when the route is not known up front; samplers see the method).

    Kept from it: the context comes from the W3C headers through the global
    propagator (`traceparent`/`tracestate`/`baggage`), a request that arrives
    inside a live span (in process) gets an INTERNAL child, the span is
    current for the whole app (audit events and Redis/SQL/httpx spans join
    the trace), 5xx and escaped exceptions set the ERROR status, and no
    header but the user agent is recorded (the others hold bearer tokens and
    cookies). Outermost: `Tracing.instrument_app` puts it around Starlette's
    ServerErrorMiddleware, so a 500 is recorded with its status.
    """

    def __init__(self, app: ASGIApp, *, tracer: trace.Tracer) -> None:
        self.app = app
        self._tracer = tracer
        self._fields = frozenset(f.encode("latin-1") for f in propagate.get_global_textmap().fields)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _EXCLUDED_PATHS:
            await self.app(scope, receive, send)
            return
        known = scope["method"] in _METHODS
        method = scope["method"] if known else "HTTP"  # no client-chosen span names
        carrier: dict[str, str] = {}
        user_agent = ""
        fields = self._fields
        for name, value in scope["headers"]:
            if name in fields:
                carrier[name.decode("latin-1")] = value.decode("latin-1")
            elif name == b"user-agent":
                user_agent = value.decode("latin-1")
        # Every attribute is paid for twice, when set and when exported, on
        # every request: only what an investigation uses (scheme, HTTP
        # version, host and peer port are left out).
        attributes: dict[str, str | int] = {
            "http.method": method if known else "_OTHER",
            # The path only: a query string may carry anything a client put there.
            "http.target": scope["path"],
        }
        if user_agent:
            attributes["http.user_agent"] = user_agent
        client = scope.get("client")
        if client:
            attributes["net.peer.ip"] = client[0]
        if trace.get_current_span() is trace.INVALID_SPAN:
            kind = SpanKind.SERVER
            parent = propagate.extract(carrier) if carrier else None
        else:
            kind = SpanKind.INTERNAL
            parent = None  # the live span of the caller in this process
        span = self._tracer.start_span(method, parent, kind, attributes)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        status = 500  # an exception before the response started
        failed = False

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception as exc:
            failed = True
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            template = route_template(scope)
            if template != UNMATCHED:
                span.update_name(f"{method} {template}")
                span.set_attributes({"http.route": template, "http.status_code": status})
            else:
                span.set_attribute("http.status_code", status)
            if status >= 500 and not failed:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            otel_context.detach(token)


class Tracing:
    """Tracer provider and instrumentation for one service.

    Args:
        service_name: `service.name` of every span.
        version: `service.version`.
        otlp_endpoint: OTLP/HTTP base URL; empty: no exporter at all.
    """

    def __init__(self, *, service_name: str, version: str, otlp_endpoint: str = "") -> None:
        resource = _Resource.of(
            Resource.create({SERVICE_NAME: service_name, SERVICE_VERSION: version})
        )
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
        """Trace every request of `app` (`ServerSpanMiddleware`, outermost)."""
        tracer = self.provider.get_tracer("shared.tracing")
        build = app.build_middleware_stack

        def build_middleware_stack(_: FastAPI) -> ASGIApp:
            # Around ServerErrorMiddleware, not inside it: the 500 it sends
            # for an unhandled exception, and its error log, are in the span.
            return ServerSpanMiddleware(build(), tracer=tracer)

        app.build_middleware_stack = types.MethodType(build_middleware_stack, app)  # type: ignore[method-assign]

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
