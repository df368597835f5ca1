"""`shared.otlp_encoding`: our OTLP bytes parse to exactly the SDK encoder's message."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from shared.otlp_encoding import FastOTLPSpanExporter, encode_request

RESOURCE = Resource.create({"service.name": "user-service", "service.version": "0.1.0"})
OTHER_RESOURCE = Resource({"service.name": "auth-service", "n": 3}, schema_url="https://s/1")
SCOPE = InstrumentationScope("shared.server_span")
SCOPE_FULL = InstrumentationScope("redis", "0.66b1", "https://schema/2", {"a": "b"})


def _ctx(trace_id: int, span_id: int, *, remote: bool = False, state: str = "") -> SpanContext:
    ts = TraceState.from_header([state]) if state else TraceState()
    return SpanContext(trace_id, span_id, remote, TraceFlags(1), ts)


def _span(name: str = "GET /users/{user_id}", **kw: object) -> ReadableSpan:
    args: dict[str, object] = {
        "name": name,
        "context": _ctx(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331),
        "resource": RESOURCE,
        "instrumentation_scope": SCOPE,
        "kind": SpanKind.SERVER,
        "start_time": 1_700_000_000_000_000_000,
        "end_time": 1_700_000_000_000_250_000,
        "attributes": {
            "http.method": "GET",
            "http.target": "/users/0b1f",
            "http.route": "/users/{user_id}",
            "http.status_code": 200,
        },
    }
    args.update(kw)
    return ReadableSpan(**args)  # type: ignore[arg-type]


CORPUS = [
    _span(),
    _span(kind=SpanKind.INTERNAL, parent=_ctx(1, 2)),
    _span(kind=SpanKind.CLIENT, parent=_ctx(1, 2, remote=True, state="k1=v1,k2=v2")),
    _span(kind=SpanKind.PRODUCER, context=_ctx(2**128 - 1, 2**64 - 1, state="vendor=x")),
    _span(kind=SpanKind.CONSUMER, name=""),
    _span(start_time=None, end_time=None, attributes=None),
    _span(
        attributes={
            "s": "",
            "unicode": "h\u00e9llo \u2603 \U0001f600",
            "t": True,
            "f": False,
            "zero": 0,
            "neg": -1,
            "min": -(2**63),
            "max": 2**63 - 1,
            "big": 2**64,  # out of int64: the SDK drops just this attribute
            "pi": 3.14159,
            "nan": float("nan"),
            "inf": float("-inf"),
            "b": b"\x00\xff",
            "none": None,
            "list": ["a", "b"],
            "ints": (1, 2, -3),
            "mixed": [1, "x", True, 2.5, None],
            "empty": [],
            "map": {"k": "v", "n": {"deep": [1]}},
            "bad": object(),  # dropped
            "long": "x" * 300,
        }
    ),
    _span(status=Status(StatusCode.ERROR, "RuntimeError: kaboom")),
    _span(status=Status(StatusCode.OK)),
    _span(status=Status(StatusCode.ERROR)),
    _span(
        events=(
            Event("exception", {"exception.type": "RuntimeError", "n": 1}, timestamp=5),
            Event("", None, timestamp=7),
        )
    ),
    _span(
        links=(
            Link(_ctx(9, 10), {"l": "1"}),
            Link(_ctx(11, 12, remote=True)),
        )
    ),
    _span(resource=OTHER_RESOURCE, instrumentation_scope=SCOPE_FULL),
    _span(instrumentation_scope=None),
]


def _parsed(data: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(data)


def test_each_span_alone_encodes_like_the_sdk() -> None:
    for span in CORPUS:
        assert _parsed(encode_request([span])) == encode_spans([span]), span.name


def test_a_mixed_batch_groups_like_the_sdk_twice_over() -> None:
    batch = CORPUS * 3
    first = encode_request(batch)
    assert _parsed(first) == encode_spans(batch)
    # The second time most pieces come from the cache: same bytes.
    assert encode_request(batch) == first


def _sdk_spans(limits: SpanLimits) -> list[ReadableSpan]:
    """Spans the SDK itself made under span limits: bounded collections with drops."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE, span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("redis", "0.66b1")
    links = [Link(_ctx(9, 10), {"l": "1", "m": "2"}), Link(_ctx(11, 12, remote=True))]
    with tracer.start_as_current_span("parent", links=links) as parent:
        parent.set_attributes({"a": 1, "b": "two", "c": True, "d": 4.5})
        parent.add_event("e1", {"x": 1, "y": 2})
        parent.add_event("e2")
        with tracer.start_as_current_span("child", kind=SpanKind.CLIENT) as child:
            child.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()
    return list(exporter.get_finished_spans())


@pytest.mark.parametrize(
    "limits",
    [
        SpanLimits(),
        SpanLimits(max_span_attributes=2, max_events=1, max_links=1, max_event_attributes=1),
        SpanLimits(max_span_attributes=0, max_events=0, max_links=0),
    ],
    ids=["unlimited", "tight", "zero"],
)
def test_spans_the_sdk_made_under_limits_encode_like_the_sdk(limits: SpanLimits) -> None:
    # The encoder reads ReadableSpan's fields directly; these are the SDK's
    # own span objects (bounded attributes, events and links, drop counts).
    spans = _sdk_spans(limits)
    assert _parsed(encode_request(spans)) == encode_spans(spans)


def test_an_empty_batch() -> None:
    assert _parsed(encode_request([])) == encode_spans([])


def test_cached_attribute_pairs_keep_their_message_of_origin() -> None:
    # The same pair as a span attribute, an event attribute and a link attribute.
    pair = {"k": "v"}
    span = _span(
        attributes=pair, events=(Event("e", pair, timestamp=1),), links=(Link(_ctx(1, 2), pair),)
    )
    assert _parsed(encode_request([span, span])) == encode_spans([span, span])


class _Sink(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        _Sink.bodies.append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[str]:
    _Sink.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    server.shutdown()
    server.server_close()


def test_the_exporter_posts_the_same_message_over_http(sink: str) -> None:
    exporter = FastOTLPSpanExporter(endpoint=sink)
    assert exporter.export(CORPUS) is SpanExportResult.SUCCESS
    (body,) = _Sink.bodies
    assert _parsed(body) == encode_spans(CORPUS)
    exporter.shutdown()
    assert exporter.export(CORPUS) is SpanExportResult.FAILURE  # like the SDK's, after shutdown


def test_an_unreachable_collector_is_a_failure_not_an_exception() -> None:
    exporter = FastOTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces", timeout=1)
    assert exporter.export([_span()]) is SpanExportResult.FAILURE
