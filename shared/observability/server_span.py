"""One span per HTTP request, recorded without the SDK's per-span machinery.

Why not `opentelemetry-instrumentation-fastapi` (bench/README.md,
optimisation 25, measured again for this choice): around a one-route app in
process, the instrumentor added ~530 µs a request where this middleware adds
~50 (same provider, a processor that drops the spans): it matches every
route a second time, makes a span for each `send` besides the server span,
and builds a dozen attributes (among them `http.url`, which carries the
query string). Nor `Tracer.start_span`: the SDK's own `Span` costs ~45 µs a
request in the service (attribute cleaning under a lock, the sampler chain,
`end`), more than the profile read it measures.

What the instrumentor and the SDK would honour is honoured here:
`OTEL_SEMCONV_STABILITY_OPT_IN` (`http`, `http/dup`) names the attributes;
`OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER` and
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` are read where the exporters are made
(shared/observability/tracing.py). tests/observability/test_otel_env.py checks all four.

Here, at the start of a request, the middleware only mints the span's ids
and makes a `NonRecordingSpan` with them current, so everything that runs
inside (audit events, Redis/SQL/httpx spans, outgoing `traceparent`) joins
the trace exactly as it would under an SDK span. When the response is done
it builds the finished `ReadableSpan` in one go (name from the route
template, status, attributes it knows are clean) and hands it to the span
processors' `on_end`, the same object the SDK would have handed them.

Kept from the SDK path: W3C context from the global propagator
(`traceparent`/`tracestate`/`baggage`), a request that arrives inside a live
span (in process) is its INTERNAL child, the provider's id generator, and
its sampler when one is configured (OTEL_TRACES_SAMPLER; the default,
parent-based always-on, is decided inline). A 5xx or an escaped exception
sets the ERROR status, and the exception is recorded as the SDK records it.
Not kept: processors' `on_start` (the SDK's batch and simple processors do
nothing there) and span limits (the attributes are few and bounded here).

With metrics on as well, this middleware also records the request metrics
(`HttpMetricsMiddleware` is then not installed): one wrapper of `send`, one
route lookup and one `finally` per request instead of two of each (target 6).
Paths without spans (probes, scrapes) are still counted.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Sequence
from typing import NamedTuple

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util.types import AttributeValue
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.http.middleware import client_ip
from shared.observability.http_metrics import (
    UNMATCHED,
    HttpMetricsMiddleware,
    metrics_method,
    route_template,
)
from shared.observability.metrics import ServiceMetrics

__all__ = ["ServerSpanMiddleware"]

# Probes and scrapes would be most of the spans and tell nothing.
_EXCLUDED_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The user agent is the client's to choose: bounded, like every other value here.
_MAX_USER_AGENT = 256
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_EMPTY_STATE = TraceState()
_OK = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)
_SCOPE = InstrumentationScope("shared.observability.server_span")
_log = logging.getLogger(__name__)


class _Names(NamedTuple):
    """The attribute names of each value, per OTEL_SEMCONV_STABILITY_OPT_IN."""

    method: tuple[str, ...]
    path: tuple[str, ...]
    user_agent: tuple[str, ...]
    peer: tuple[str, ...]
    status: tuple[str, ...]
    # Behind a trusted proxy (TRUSTED_PROXIES) the client and the socket's
    # peer differ. Each convention names one of them in `peer` above; the
    # other is added only then, so a direct request pays for no extra
    # attribute: the old names' `http.client_ip` is the client, the stable
    # names' `network.peer.address` the proxy (their `client.address` is the
    # client behind any intermediaries).
    forwarded_client: tuple[str, ...]
    proxy_peer: tuple[str, ...]


_OLD_NAMES = (
    "http.method",
    "http.target",
    "http.user_agent",
    "net.peer.ip",
    "http.status_code",
    "http.client_ip",
    None,
)
_STABLE_NAMES = (
    "http.request.method",
    "url.path",
    "user_agent.original",
    "client.address",
    "http.response.status_code",
    "client.address",
    "network.peer.address",
)


def _semconv_names() -> _Names:
    """Old HTTP attribute names, the stable ones, or both, as the instrumentations choose.

    OTEL_SEMCONV_STABILITY_OPT_IN (a comma-separated list): `http` emits the
    stable names only, `http/dup` both; anything else the old names, the
    default of opentelemetry-instrumentation-fastapi/-asgi too.
    https://opentelemetry.io/docs/specs/semconv/non-normative/http-migration/
    """
    opt_in = {
        part.strip().lower()
        for part in os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "").split(",")
    }
    pairs: list[tuple[str | None, ...]]
    if "http/dup" in opt_in:
        pairs = [(old, new) for old, new in zip(_OLD_NAMES, _STABLE_NAMES, strict=True)]
    elif "http" in opt_in:
        pairs = [(new,) for new in _STABLE_NAMES]
    else:
        pairs = [(old,) for old in _OLD_NAMES]
    return _Names(*(tuple(name for name in names if name is not None) for names in pairs))


def _default_sampler() -> bool:
    # What TracerProvider() picks with OTEL_TRACES_SAMPLER unset.
    return os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() in (
        "",
        "parentbased_always_on",
    )


def _exception_event(exc: BaseException) -> Event:
    """The event `Span.record_exception` would add for an escaped exception."""
    module, name = type(exc).__module__, type(exc).__qualname__
    return Event(
        "exception",
        {
            "exception.type": f"{module}.{name}" if module and module != "builtins" else name,
            "exception.message": str(exc),
            "exception.stacktrace": "".join(traceback.format_exception(exc)),
            "exception.escaped": "True",
        },
    )


class ServerSpanMiddleware:
    """Records one span per request, named `METHOD /route/{template}`.

    Args:
        app: the wrapped ASGI app (the whole stack: put this outermost, around
            ServerErrorMiddleware, so a 500 is recorded with its status).
        provider: where the resource, id generator and sampler come from.
        processors: receive each finished span (`on_end`), in order.
        metrics: also record every request's metrics, as `HttpMetricsMiddleware`
            would (install that one only when this one has no metrics).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        provider: TracerProvider,
        processors: Sequence[SpanProcessor],
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.app = app
        self._metrics = metrics
        # Requests that get no span: counted all the same when metrics are on.
        self._unspanned: ASGIApp = (
            app if metrics is None else HttpMetricsMiddleware(app, metrics=metrics)
        )
        self._resource = provider.resource
        self._ids = provider.id_generator
        self._sampler = None if _default_sampler() else provider.sampler
        self._processors = processors
        self._fields = frozenset(f.encode("latin-1") for f in propagate.get_global_textmap().fields)
        self._names = _semconv_names()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in _EXCLUDED_PATHS:
            await self._unspanned(scope, receive, send)
            return
        start_ns = time.time_ns()
        # Monotonic: the latency histogram, and the span's end (start + elapsed).
        started = time.perf_counter_ns()
        method = scope["method"]
        if method not in _METHODS:
            method = "HTTP"  # no client-chosen span names
        carrier: dict[str, str] | None = None
        user_agent = ""
        fields = self._fields
        for name, value in scope["headers"]:
            if name in fields:
                if carrier is None:
                    carrier = {}
                carrier[name.decode("latin-1")] = value.decode("latin-1")
            elif name == b"user-agent":
                user_agent = value.decode("latin-1")[:_MAX_USER_AGENT]
        # The attributes are built when the span is (`_finish`): a request
        # that is not recorded (no exporter, not sampled) never needs them,
        # unless a configured sampler asks to see them first.
        attributes: dict[str, AttributeValue] | None = None

        live = trace.get_current_span().get_span_context()
        if live.is_valid:
            kind, parent_ctx = SpanKind.INTERNAL, None  # a call inside this process
            parent: SpanContext | None = live
        else:
            kind = SpanKind.SERVER
            parent_ctx = propagate.extract(carrier) if carrier else None
            remote = trace.get_current_span(parent_ctx).get_span_context() if carrier else None
            parent = remote if remote is not None and remote.is_valid else None
        trace_id = parent.trace_id if parent is not None else self._ids.generate_trace_id()
        span_id = self._ids.generate_span_id()
        state = parent.trace_state if parent is not None else _EMPTY_STATE
        if self._sampler is None:
            sampled = parent is None or parent.trace_flags.sampled
        else:
            attributes = self._request_attributes(scope, method, user_agent)
            result = self._sampler.should_sample(parent_ctx, trace_id, method, kind, attributes)
            # RECORD_ONLY spans would never be exported: not recorded either.
            sampled = result.decision is Decision.RECORD_AND_SAMPLE
            state = result.trace_state or state
            if result.attributes:
                attributes.update(result.attributes)
        context = SpanContext(
            trace_id, span_id, False, _SAMPLED if sampled else _NOT_SAMPLED, state
        )
        # The span is current for everything the request runs: in the
        # extracted context when the caller sent one, else in the current one.
        token = otel_context.attach(
            trace.set_span_in_context(NonRecordingSpan(context), parent_ctx)
        )
        status = 500  # an exception before the response started
        error: BaseException | None = None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception as exc:
            error = exc
            raise
        finally:
            otel_context.detach(token)
            # No processor (tracing on for its ids only): nobody to hand a span to.
            record_span = sampled and bool(self._processors)
            if self._metrics is not None or record_span:
                elapsed_ns = time.perf_counter_ns() - started
                template = route_template(scope)
                if self._metrics is not None:
                    self._metrics.observe_request(
                        metrics_method(scope), template, status, elapsed_ns / 1e9
                    )
                if record_span:
                    if attributes is None:
                        attributes = self._request_attributes(scope, method, user_agent)
                    self._forwarded(scope, attributes)
                    self._finish(
                        template,
                        method,
                        attributes,
                        context,
                        parent,
                        kind,
                        status,
                        error,
                        start_ns,
                        start_ns + elapsed_ns,
                    )

    def _request_attributes(
        self, scope: Scope, method: str, user_agent: str
    ) -> dict[str, AttributeValue]:
        """The request's attributes: only what an investigation uses, since
        every attribute is paid for when recorded and again when exported."""
        names = self._names
        attributes: dict[str, AttributeValue] = {}
        for key in names.method:
            attributes[key] = "_OTHER" if method == "HTTP" else method
        for key in names.path:
            # The path only: a query string may carry anything a client put there.
            attributes[key] = scope["path"]
        if user_agent:
            for key in names.user_agent:
                attributes[key] = user_agent
        client = scope.get("client")
        if client:
            for key in names.peer:
                attributes[key] = client[0]
        return attributes

    def _forwarded(self, scope: Scope, attributes: dict[str, AttributeValue]) -> None:
        """The client behind a trusted proxy, once the request context resolved it.

        Read after the app ran (RequestContextMiddleware, inside this one,
        believes X-Forwarded-For from TRUSTED_PROXIES only): behind the
        gateway the socket's peer is the gateway on every request, and an
        investigation needs the address the gateway saw.
        """
        client = client_ip(scope)
        peer = scope["client"][0] if scope.get("client") else ""
        if not client or client == peer:
            return
        names = self._names
        for key in names.forwarded_client:
            attributes[key] = client
        if peer:
            for key in names.proxy_peer:
                attributes[key] = peer

    def _finish(
        self,
        template: str,
        method: str,
        attributes: dict[str, AttributeValue],
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        status: int,
        error: BaseException | None,
        start_ns: int,
        end_ns: int,
    ) -> None:
        name = method
        if template != UNMATCHED:
            name = f"{method} {template}"
            attributes["http.route"] = template
        for key in self._names.status:
            attributes[key] = status
        outcome = _OK
        events: tuple[Event, ...] = ()
        if error is not None:
            outcome = Status(StatusCode.ERROR, f"{type(error).__name__}: {error}")
            events = (_exception_event(error),)
        elif status >= 500:
            outcome = _ERROR
        span = ReadableSpan(
            name=name,
            context=context,
            parent=parent,
            resource=self._resource,
            attributes=attributes,
            events=events,
            kind=kind,
            instrumentation_scope=_SCOPE,
            status=outcome,
            start_time=start_ns,
            end_time=end_ns,
        )
        for processor in self._processors:
            processor.on_end(span)
