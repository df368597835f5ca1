"""A minimal OTLP/HTTP receiver for tests: decodes what the services export.

Accepts protobuf `ExportTraceServiceRequest` on /v1/traces and
`ExportLogsServiceRequest` on /v1/logs (the OTLP/HTTP exporter's default
encoding) and keeps the spans and log records it decoded. It also answers
as a forward proxy would be asked (`POST http://collector/v1/traces`), and
keeps every request target, so tests can tell a proxied export from a
direct one.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind: 2 SERVER, 3 CLIENT
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class LogRecord:
    service: str
    event_name: str
    trace_id: str
    body: dict[str, Any]


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


class OtlpReceiver:
    """Listens on 127.0.0.1:`port` until `close()`."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.logs: list[LogRecord] = []
        self.raw: list[bytes] = []
        self.targets: list[str] = []  # request targets as sent: a path, or a proxy's URL
        self.authorizations: list[str | None] = []  # each request's Authorization header
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                with receiver._lock:
                    receiver.targets.append(self.path)
                    receiver.authorizations.append(self.headers.get("authorization"))
                path = urlsplit(self.path).path
                if path == "/v1/traces":
                    receiver._traces(body)
                    reply = ExportTraceServiceResponse().SerializeToString()
                elif path == "/v1/logs":
                    receiver._logs(body)
                    reply = ExportLogsServiceResponse().SerializeToString()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _traces(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        for rs in request.resource_spans:
            service = str(_attrs(rs.resource.attributes).get("service.name"))
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append(
                        Span(
                            service=service,
                            name=s.name,
                            kind=s.kind,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            attributes=_attrs(s.attributes),
                        )
                    )
        with self._lock:
            self.raw.append(body)
            self.spans.extend(spans)

    def _logs(self, body: bytes) -> None:
        request = ExportLogsServiceRequest.FromString(body)
        records = []
        for rl in request.resource_logs:
            service = str(_attrs(rl.resource.attributes).get("service.name"))
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    body_value = _value(r.body)
                    records.append(
                        LogRecord(
                            service=service,
                            event_name=r.event_name,
                            trace_id=r.trace_id.hex(),
                            body=body_value if isinstance(body_value, dict) else {},
                        )
                    )
        with self._lock:
            self.raw.append(body)
            self.logs.extend(records)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
