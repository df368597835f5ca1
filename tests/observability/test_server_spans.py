"""`ServerSpanMiddleware` (shared.observability.server_span): one span per request.

What each span holds, and its parent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import httpx
import pytest
from fastapi import FastAPI, Response
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, StatusCode, TraceState
from opentelemetry.util.types import Attributes

from shared.observability.server_span import ServerSpanMiddleware
from shared.observability.tracing import Tracing, _Resource

pytestmark = pytest.mark.anyio


TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


def _app() -> tuple[FastAPI, Tracing, InMemorySpanExporter]:
    app = FastAPI()
    tracing = Tracing(service_name="span-test", version="1.2.3")

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @app.get("/busy")
    async def busy() -> Response:
        return Response(status_code=503)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    @app.get("/nested")
    async def nested() -> dict[str, str]:
        # What Redis/SQL/httpx instrumentation does inside a request.
        with tracing.provider.get_tracer("child").start_as_current_span("child-op"):
            return {"trace": format(trace.get_current_span().get_span_context().trace_id, "032x")}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    exporter = InMemorySpanExporter()
    tracing.add_processor(SimpleSpanProcessor(exporter))
    tracing.instrument_app(app)
    return app, tracing, exporter


async def _get(app: FastAPI, path: str, **kw: object) -> httpx.Response:
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        return await client.request(str(kw.pop("method", "GET")), path, **kw)  # type: ignore[arg-type]


def _only(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


async def test_span_is_named_by_the_route_template_and_holds_no_query_string() -> None:
    app, _, exporter = _app()
    r = await _get(app, "/items/abc?access_token=s3cret-value", headers={"User-Agent": "ua/1"})
    assert r.status_code == 200
    span = _only(exporter)
    assert span.name == "GET /items/{item_id}"
    assert span.kind == SpanKind.SERVER
    assert span.parent is None
    attrs = dict(span.attributes or {})
    assert attrs["http.route"] == "/items/{item_id}"
    assert attrs["http.status_code"] == 200
    assert attrs["http.method"] == "GET"
    assert attrs["http.target"] == "/items/abc"
    assert attrs["http.user_agent"] == "ua/1"
    assert "s3cret-value" not in str(attrs)
    assert span.resource.attributes["service.name"] == "span-test"
    assert span.status.status_code == StatusCode.UNSET


async def test_w3c_traceparent_makes_the_span_a_child_of_the_remote_caller() -> None:
    app, _, exporter = _app()
    await _get(app, "/items/1", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    span = _only(exporter)
    assert span.kind == SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None
    assert span.parent.is_remote
    assert format(span.parent.span_id, "016x") == PARENT_ID


async def test_a_request_inside_a_live_span_is_its_internal_child() -> None:
    app, tracing, exporter = _app()
    tracer = tracing.provider.get_tracer("test")
    with tracer.start_as_current_span("caller") as caller:
        await _get(app, "/items/1")
    server = next(s for s in exporter.get_finished_spans() if s.name != "caller")
    assert server.kind == SpanKind.INTERNAL
    assert server.parent is not None
    assert server.parent.span_id == caller.get_span_context().span_id


async def test_unmatched_paths_are_named_by_the_method_only() -> None:
    app, _, exporter = _app()
    assert (await _get(app, "/no/such/thing")).status_code == 404
    span = _only(exporter)
    assert span.name == "GET"
    assert "http.route" not in (span.attributes or {})
    assert (span.attributes or {})["http.status_code"] == 404


async def test_unknown_methods_never_name_a_span() -> None:
    app, _, exporter = _app()
    await _get(app, "/items/1", method="PURGE")
    span = _only(exporter)
    assert span.name.startswith("HTTP")
    assert (span.attributes or {})["http.method"] == "_OTHER"


async def test_5xx_responses_and_exceptions_are_errors() -> None:
    app, _, exporter = _app()
    assert (await _get(app, "/busy")).status_code == 503
    busy = _only(exporter)
    assert busy.status.status_code == StatusCode.ERROR
    exporter.clear()

    assert (await _get(app, "/boom")).status_code == 500
    boom = _only(exporter)
    assert boom.name == "GET /boom"
    assert boom.status.status_code == StatusCode.ERROR
    assert boom.status.description == "RuntimeError: kaboom"
    assert (boom.attributes or {})["http.status_code"] == 500  # ServerErrorMiddleware's answer
    assert [e.name for e in boom.events] == ["exception"]


async def test_probes_and_scrapes_are_not_traced() -> None:
    app, _, exporter = _app()
    assert (await _get(app, "/healthz")).status_code == 200
    assert exporter.get_finished_spans() == ()


def test_the_frozen_resource_hashes_and_compares_like_a_resource() -> None:
    plain = Resource.create({"service.name": "a", "service.version": "1"})
    frozen = _Resource.of(plain)
    assert hash(frozen) == hash(plain)
    assert frozen == plain
    assert plain == frozen
    assert dict(frozen.attributes) == dict(plain.attributes)
    assert frozen.schema_url == plain.schema_url
    assert frozen != _Resource.of(Resource.create({"service.name": "b"}))


async def test_spans_made_inside_the_request_are_children_of_its_span() -> None:
    app, _, exporter = _app()
    r = await _get(app, "/nested", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert r.json() == {"trace": TRACE_ID}  # what audit events read as their trace id
    spans = {s.name: s for s in exporter.get_finished_spans()}
    server, child = spans["GET /nested"], spans["child-op"]
    assert child.parent is not None
    assert child.parent.span_id == server.context.span_id
    assert child.context.trace_id == server.context.trace_id == int(TRACE_ID, 16)
    assert server.start_time is not None
    assert child.start_time is not None
    assert child.end_time is not None
    assert server.end_time is not None
    assert server.start_time <= child.start_time <= child.end_time <= server.end_time


async def test_a_caller_that_did_not_sample_gets_no_span_but_keeps_its_trace() -> None:
    app, _, exporter = _app()
    r = await _get(app, "/nested", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"})
    assert r.json() == {"trace": TRACE_ID}
    assert exporter.get_finished_spans() == ()  # parent-based: the child span is dropped too


async def test_a_configured_sampler_is_obeyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    app, _, exporter = _app()
    assert (await _get(app, "/items/1")).status_code == 200
    assert exporter.get_finished_spans() == ()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    app, _, exporter = _app()
    await _get(app, "/items/1", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"})
    assert [s.name for s in exporter.get_finished_spans()] == ["GET /items/{item_id}"]


async def test_a_long_user_agent_is_cut_short() -> None:
    app, _, exporter = _app()
    await _get(app, "/items/1", headers={"User-Agent": "x" * 5000})
    assert (_only(exporter).attributes or {})["http.user_agent"] == "x" * 256


async def test_an_escaped_exception_is_recorded_like_the_sdk_records_it() -> None:
    app, _, exporter = _app()
    assert (await _get(app, "/boom")).status_code == 500
    (event,) = _only(exporter).events
    attrs = dict(event.attributes or {})
    assert attrs["exception.type"] == "RuntimeError"
    assert attrs["exception.message"] == "kaboom"
    assert attrs["exception.escaped"] == "True"
    assert "raise RuntimeError" in str(attrs["exception.stacktrace"])


async def test_the_callers_context_is_restored_and_its_values_reach_the_request() -> None:
    app, _, exporter = _app()

    @app.get("/baggage")
    async def read_baggage() -> dict[str, object]:
        return {"tenant": baggage.get_baggage("tenant")}

    token = otel_context.attach(baggage.set_baggage("tenant", "t-1"))
    try:
        before = otel_context.get_current()
        r = await _get(app, "/baggage")
        # The request saw the caller's values, under its own span...
        assert r.json() == {"tenant": "t-1"}
        # ...and left the caller's context exactly as it found it.
        assert otel_context.get_current() is before
        assert not trace.get_current_span().get_span_context().is_valid
    finally:
        otel_context.detach(token)
    assert [s.name for s in exporter.get_finished_spans()] == ["GET /baggage"]


async def test_a_configured_sampler_sees_the_request_attributes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The attributes are built only for spans that are recorded, except when
    # a configured sampler must see them first: it gets the same ones.
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    seen: list[dict[str, object]] = []

    class Watching(Sampler):
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
            seen.append(dict(attributes or {}))
            return SamplingResult(Decision.RECORD_AND_SAMPLE, {"sampler.note": "yes"})

        def get_description(self) -> str:
            return "Watching"

    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    exporter = InMemorySpanExporter()
    stack = app.build_middleware_stack()
    provider = TracerProvider(sampler=Watching())
    traced = ServerSpanMiddleware(
        stack, provider=provider, processors=[SimpleSpanProcessor(exporter)]
    )
    transport = httpx.ASGITransport(traced)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        await client.get("/items/7?secret=1", headers={"User-Agent": "probe/1"})
    assert seen == [
        {
            "http.method": "GET",
            "http.target": "/items/7",
            "http.user_agent": "probe/1",
            "net.peer.ip": "127.0.0.1",
        }
    ]
    attrs = dict(_only(exporter).attributes or {})
    assert attrs["sampler.note"] == "yes"
    assert attrs["http.route"] == "/items/{item_id}"
    assert attrs["http.status_code"] == 200


async def test_a_span_lasts_as_long_as_its_request() -> None:
    app, _, exporter = _app()

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(0.05)
        return {}

    before = time.time_ns()
    await _get(app, "/slow")
    after = time.time_ns()
    span = _only(exporter)
    assert span.start_time is not None
    assert span.end_time is not None
    assert before <= span.start_time < span.end_time <= after + 1_000_000
    assert span.end_time - span.start_time >= 50_000_000
