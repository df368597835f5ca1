"""OTLP/HTTP span export with the request body written straight to protobuf's wire format.

Why (bench/README.md, target 6): the OTLP exporter builds a Python
protobuf object for every span, attribute and value, then copies the spans
again into their `ScopeSpans`: ~25 µs a span, paid on the same core as the
requests being traced, for every request. The message is small and fixed
(opentelemetry-proto `trace.proto`), so `encode_request` writes its bytes
directly, and keeps the bytes of attribute pairs that recur (method, route,
status, user agent, resource and scope) in a small bounded cache.

`encode_request(spans)` parses to exactly the message the SDK's
`encode_spans(spans)` builds (tests/observability/test_otlp_encoding.py
compares them field by field over a corpus of odd spans), including its
quirks: an attribute whose value cannot be encoded is logged and left out,
one at a time. `FastOTLPSpanExporter` is the SDK's exporter with only the
encoding step swapped: same endpoint, headers, compression, retries, size
cap and self-metrics.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.http._common import _is_request_too_large
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

__all__ = ["FastOTLPSpanExporter", "encode_request"]

_log = logging.getLogger(__name__)

_INT64 = range(-(2**63), 2**63)
# SDK SpanKind -> trace.proto Span.SpanKind
_KIND = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
# SpanFlags: HAS_IS_REMOTE (0x100), IS_REMOTE (0x200)
_LOCAL_PARENT = struct.pack("<I", 0x100)
_REMOTE_PARENT = struct.pack("<I", 0x300)
_CACHE_LIMIT = 4096
_CACHEABLE_LEN = 256


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]


def _tag(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _ld(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes, sub-message)."""
    return tag + _varint(len(payload)) + payload


# Tags used below, named message_field.
_T1, _T2, _T3, _T4, _T5, _T6, _T7 = (_tag(n, 2) for n in range(1, 8))
_ANY_BOOL, _ANY_INT, _ANY_DOUBLE = _tag(2, 0), _tag(3, 0), _tag(4, 1)
_SPAN_KIND, _SPAN_START, _SPAN_END = _tag(6, 0), _tag(7, 1), _tag(8, 1)
_SPAN_ATTR, _SPAN_DROPPED_ATTRS, _SPAN_EVENT = _tag(9, 2), _tag(10, 0), _tag(11, 2)
_SPAN_DROPPED_EVENTS, _SPAN_LINK, _SPAN_DROPPED_LINKS = _tag(12, 0), _tag(13, 2), _tag(14, 0)
_SPAN_STATUS, _SPAN_FLAGS = _tag(15, 2), _tag(16, 5)
_EVENT_TIME, _EVENT_DROPPED = _tag(1, 1), _tag(4, 0)
_LINK_DROPPED, _LINK_FLAGS = _tag(5, 0), _tag(6, 5)
_STATUS_CODE = _tag(3, 0)
# Fixed-size fields and whole fields that never change.
_TRACE_ID, _SPAN_ID, _PARENT_ID = _T1 + b"\x10", _T2 + b"\x08", _T4 + b"\x08"
# By id: SpanKind members are singletons, and an Enum's hash is a Python-level call.
_KIND_FIELD = {id(kind): _SPAN_KIND + _SMALL[n] for kind, n in _KIND.items()}
_STATUS_UNSET = _SPAN_STATUS + b"\x00"
_STATUS_OK = _SPAN_STATUS + b"\x02" + _STATUS_CODE + b"\x01"
_STATUS_ERROR = _SPAN_STATUS + b"\x02" + _STATUS_CODE + b"\x02"
_pack_u64 = struct.Struct("<Q").pack


def _any_value(value: Any) -> bytes:
    """An AnyValue message, type checks in the SDK encoder's order."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return _ANY_BOOL + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _ld(_T1, value.encode("utf-8"))
    if isinstance(value, int):
        if value not in _INT64:
            raise ValueError(f"Value out of range: {value}")
        return _ANY_INT + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return _ANY_DOUBLE + struct.pack("<d", value)
    if isinstance(value, bytes):
        return _ld(_T7, value)
    if isinstance(value, Sequence):
        return _ld(_T5, b"".join(_ld(_T1, _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        return _ld(_T6, b"".join(_ld(_T1, _key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    return _ld(_T1, key.encode("utf-8")) + _ld(_T2, _any_value(value))


class _Encoder:
    """Writes ExportTraceServiceRequest bytes; keeps recurring pieces."""

    def __init__(self) -> None:
        self._pairs: dict[tuple[bytes, str, type, Any], bytes] = {}
        self._resources: dict[Resource, bytes] = {}
        self._scopes: dict[InstrumentationScope | None, bytes] = {}
        self._names: dict[str, bytes] = {}

    def _attributes(self, tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
        if not attributes:
            return b""
        pairs = self._pairs
        out = []
        for key, value in attributes.items():
            kind = type(value)
            # The type is part of the key: True == 1, yet they encode differently.
            cacheable = (
                kind is int or kind is bool or (kind is str and len(value) <= _CACHEABLE_LEN)
            )
            cache_key = (tag, key, kind, value)
            field = pairs.get(cache_key) if cacheable else None
            if field is None:
                try:
                    field = _ld(tag, _key_value(key, value))
                except Exception as error:  # the SDK encoder drops just this attribute
                    _log.exception("Failed to encode key %s: %s", key, error)
                    continue
                if cacheable:
                    if len(pairs) >= _CACHE_LIMIT:
                        pairs.clear()
                    pairs[cache_key] = field
            out.append(field)
        return b"".join(out)

    def _resource(self, resource: Resource) -> bytes:
        field = self._resources.get(resource)
        if field is None:
            field = _ld(_T1, self._attributes(_T1, resource.attributes))
            if len(self._resources) < 64:
                self._resources[resource] = field
        return field

    def _scope(self, scope: InstrumentationScope | None) -> bytes:
        field = self._scopes.get(scope)
        if field is None:
            body = b""
            if scope is not None:
                body = (
                    (_ld(_T1, scope.name.encode()) if scope.name else b"")
                    + (_ld(_T2, scope.version.encode()) if scope.version else b"")
                    + self._attributes(_T3, scope.attributes)
                )
            field = _ld(_T1, body)
            if len(self._scopes) < 256:
                self._scopes[scope] = field
        return field

    def span(self, span: ReadableSpan) -> bytes:
        """One `Span` message, already framed as a `ScopeSpans.spans` field.

        Reads `ReadableSpan`'s fields, not its properties: the properties copy
        (`attributes` wraps a proxy, `events` and `links` make tuples) and
        cost more than the encoding itself. The parity tests pin the field
        names to the SDK version in the lock.
        """
        ctx = span._context
        assert ctx is not None  # every recorded span has one
        parts = [
            _TRACE_ID,
            ctx.trace_id.to_bytes(16, "big"),
            _SPAN_ID,
            ctx.span_id.to_bytes(8, "big"),
        ]
        state = ctx.trace_state
        if state:
            parts.append(_ld(_T3, ",".join(f"{k}={v}" for k, v in state.items()).encode()))
        parent = span._parent
        if parent is not None:
            parts += (_PARENT_ID, parent.span_id.to_bytes(8, "big"))
        name = span._name
        if name:
            field = self._names.get(name)
            if field is None:
                field = _ld(_T5, name.encode("utf-8"))
                if len(name) <= _CACHEABLE_LEN:
                    if len(self._names) >= _CACHE_LIMIT:
                        self._names.clear()
                    self._names[name] = field
            parts.append(field)
        parts.append(_KIND_FIELD[id(span._kind)])
        if span._start_time:
            parts += (_SPAN_START, _pack_u64(span._start_time))
        if span._end_time:
            parts += (_SPAN_END, _pack_u64(span._end_time))
        attributes = span._attributes
        if attributes:
            parts.append(self._attributes(_SPAN_ATTR, attributes))
        # `type(...) is` first: an ABC isinstance is a Python-level call. A
        # bounded mapping can be empty and still count drops (a limit of 0).
        if (
            type(attributes) is not dict
            and isinstance(attributes, BoundedAttributes)
            and attributes.dropped
        ):
            parts += (_SPAN_DROPPED_ATTRS, _varint(attributes.dropped))
        events = span._events
        for event in events:
            body = (
                (_EVENT_TIME + _pack_u64(event.timestamp) if event.timestamp else b"")
                + (_ld(_T2, event.name.encode("utf-8")) if event.name else b"")
                + self._attributes(_T3, event.attributes)
                + (_EVENT_DROPPED + _varint(event.dropped_attributes))
                * bool(event.dropped_attributes)
            )
            parts.append(_ld(_SPAN_EVENT, body))
        if type(events) is not tuple and isinstance(events, BoundedList) and events.dropped:
            parts += (_SPAN_DROPPED_EVENTS, _varint(events.dropped))
        links = span._links
        for link in links:
            body = (
                _ld(_T1, link.context.trace_id.to_bytes(16, "big"))
                + _ld(_T2, link.context.span_id.to_bytes(8, "big"))
                + self._attributes(_T4, link.attributes)
                + (_LINK_DROPPED + _varint(link.dropped_attributes)) * bool(link.dropped_attributes)
                + _LINK_FLAGS
                + _flags(link.context)
            )
            parts.append(_ld(_SPAN_LINK, body))
        if type(links) is not tuple and isinstance(links, BoundedList) and links.dropped:
            parts += (_SPAN_DROPPED_LINKS, _varint(links.dropped))
        status = span._status
        description = status.description
        if description:
            code = status.status_code.value
            parts.append(
                _ld(
                    _SPAN_STATUS,
                    _ld(_T2, description.encode("utf-8"))
                    + (_STATUS_CODE + _varint(code) if code else b""),
                )
            )
        else:
            # Identity, not a dict: StatusCode's hash is a Python-level call.
            code_enum = status.status_code
            parts.append(
                _STATUS_UNSET
                if code_enum is StatusCode.UNSET
                else _STATUS_ERROR
                if code_enum is StatusCode.ERROR
                else _STATUS_OK
            )
        parts += (
            _SPAN_FLAGS,
            _REMOTE_PARENT if parent is not None and parent.is_remote else _LOCAL_PARENT,
        )
        body = b"".join(parts)
        return _T2 + _varint(len(body)) + body

    def request(self, spans: Sequence[ReadableSpan]) -> bytes:
        grouped: dict[Resource, dict[InstrumentationScope | None, list[bytes]]] = {}
        # Batches are runs of spans sharing one resource and scope object:
        # look the bucket up again only when either changes (same grouping,
        # since equal keys still meet in the same dict entry).
        last_resource: Resource | None = None
        last_scope: InstrumentationScope | None = None
        bucket: list[bytes] = []
        for span in spans:
            resource, scope = span._resource, span._instrumentation_scope or None
            if resource is not last_resource or scope is not last_scope or not grouped:
                bucket = grouped.setdefault(resource, {}).setdefault(scope, [])
                last_resource, last_scope = resource, scope
            bucket.append(self.span(span))
        out = []
        for resource, scopes in grouped.items():
            body = [self._resource(resource)]
            for scope, encoded in scopes.items():
                scope_spans = self._scope(scope) + b"".join(encoded)
                if scope is not None and scope.schema_url:
                    scope_spans += _ld(_T3, scope.schema_url.encode())
                body.append(_ld(_T2, scope_spans))
            if resource.schema_url:
                body.append(_ld(_T3, resource.schema_url.encode()))
            out.append(_ld(_T1, b"".join(body)))
        return b"".join(out)


def _flags(parent: SpanContext | None) -> bytes:
    return _REMOTE_PARENT if parent is not None and parent.is_remote else _LOCAL_PARENT


_DEFAULT = _Encoder()


def encode_request(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialized `ExportTraceServiceRequest` for `spans`."""
    return _DEFAULT.request(spans)


class FastOTLPSpanExporter(OTLPSpanExporter):
    """`OTLPSpanExporter` whose request body comes from `encode_request`.

    `export` is the SDK's own, step for step (shutdown check, self-metrics,
    size cap, the HTTP client with its retries); only the encoding differs.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = _Encoder()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            _log.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        with self._metrics.export_operation(len(spans)) as result:
            try:
                data = self._encoder.request(spans)
            except Exception as error:
                _log.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            if _is_request_too_large(data, self._max_request_size):
                _log.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size %d",
                    len(data),
                    self._max_request_size,
                )
                return SpanExportResult.FAILURE
            sent = self._client.export(data)
            if not sent.success:
                result.error = sent.error
                result.error_attrs = (
                    {HTTP_RESPONSE_STATUS_CODE: sent.status_code}
                    if sent.status_code is not None
                    else None
                )
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
