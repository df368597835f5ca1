"""SQL statement spans, recorded from SQLAlchemy's events without the SDK's `Span`.

Why not `opentelemetry-instrumentation-sqlalchemy`'s `EngineTracer`
(bench/README.md, "Changes measured on PostgreSQL", P4): on every statement
it re-derived the engine's attributes from its URL, started an SDK `Span`
(attribute cleaning under a lock, the sampler chain), and its pool
checkout/checkin listeners fed a connection-usage counter nobody reads
here; that was 10% of an exporting user service's CPU on a profile read,
and the span a second one to encode for every request. Like
`shared/observability/server_span.py`, this module notes the start of a
statement and, when it ends, builds the finished `ReadableSpan` in one go
and hands it to the span processors' `on_end`.

Which statements become spans: those that fail, and those that take at
least `min_duration_ms` (TRACING_SQL_MIN_MS). A statement that answered in
time tells an investigation nothing the server span does not (its route
names the statement; its duration bounds the statement's), while exporting
it doubled the trace cost of every read. 0 records every statement, as the
instrumentation did.

What a span holds, as the instrumentation wrote it (old semantic convention
names): `db.system`, `db.name`, `db.user`, `net.peer.name`,
`net.peer.port`, and `db.statement` with its placeholders, never parameter
values. A failed statement's status carries the exception's type only: a
driver's message can quote the values (a unique violation's key).
Statements run under `suppress_instrumentation()` (the audit writer's
inserts) make no span, as with the instrumentation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util.types import AttributeValue
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, ExceptionContext

__all__ = ["StatementRecorder", "StatementSpans"]

# Where a statement's start waits for its end: the connection's own `info`
# dict (SQLAlchemy's place for user data), since one connection runs one
# statement at a time. The entry names its statement's execution context,
# so a start left behind (a skipped or interrupted statement) never times
# another statement.
_STARTED: Final = "shared.observability.sql_spans.started"
_SCOPE = InstrumentationScope("shared.observability.sql_spans")
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_EMPTY_STATE = TraceState()
_OK = Status(StatusCode.UNSET)


def _default_sampler() -> bool:
    # What TracerProvider() picks with OTEL_TRACES_SAMPLER unset: parent-based always-on.
    return os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() in (
        "",
        "parentbased_always_on",
    )


def _engine_attributes(engine: Engine) -> dict[str, AttributeValue]:
    """The attributes every span of `engine` shares (from its URL; never the password)."""
    return url_attributes(engine.url)


def url_attributes(url: URL) -> dict[str, AttributeValue]:
    """The attributes every statement span on `url`'s database shares (never the password)."""
    # The instrumentation's names: "postgresql" (not "postgres"), "sqlite", ...
    name = url.get_backend_name()
    vendor = "postgresql" if name.startswith("postgres") else name
    attributes: dict[str, AttributeValue] = {"db.system": vendor}
    if url.database:
        attributes["db.name"] = url.database
    if url.username:
        attributes["db.user"] = url.username
    if url.host:
        attributes["net.peer.name"] = url.host
    if url.port:
        attributes["net.peer.port"] = url.port
    return attributes


# What `StatementRecorder.start` hands to `end`: the monotonic start time.
_Started = int


class StatementRecorder:
    """Builds the CLIENT span of one failed or slow statement, and hands it on.

    For any code that runs statements: `StatementSpans` (an engine's events)
    and the PostgreSQL read pool (`shared.db.reads.PoolReads`).

    Args:
        attributes: what every span shares (`url_attributes`).
        provider: where the resource, id generator and sampler come from.
        processors: receive each finished span (`on_end`), in order.
        min_duration_ms: statements faster than this (and successful) make no span.
    """

    def __init__(
        self,
        attributes: dict[str, AttributeValue],
        *,
        provider: TracerProvider,
        processors: Sequence[SpanProcessor],
        min_duration_ms: float,
    ) -> None:
        self._resource = provider.resource
        self._ids = provider.id_generator
        self._sampler = None if _default_sampler() else provider.sampler
        self._processors = processors
        self._min_ns = int(min_duration_ms * 1_000_000)
        self._shared_attributes = attributes
        db_name = attributes.get("db.name")
        self._suffix = f" {db_name}" if db_name else ""
        self._vendor = str(attributes["db.system"])

    def start(self) -> _Started:
        """Note a statement's start: one clock read, nothing else.

        Whether it will be recorded (instrumentation suppressed, an unsampled
        parent, fast enough) is decided in `end`, which runs in the same
        context: most statements are fast, so most never ask (three context
        look-ups a read saved, bench/README.md P11).
        """
        return time.perf_counter_ns()

    def end(self, started: _Started, statement: str, error: BaseException | None = None) -> None:
        """The statement ended: record it when it failed or took long enough."""
        elapsed = time.perf_counter_ns() - started
        if error is None and elapsed < self._min_ns:
            return
        if not is_instrumentation_enabled():
            return
        parent = trace.get_current_span().get_span_context()
        if self._sampler is None and parent.is_valid and not parent.trace_flags.sampled:
            return  # the default sampler follows the parent: never recorded
        self._record(elapsed, parent, statement, error)

    def _record(
        self,
        elapsed: int,
        parent: SpanContext,
        statement: str,
        error: BaseException | None,
    ) -> None:
        end_ns = time.time_ns()
        start_ns = end_ns - elapsed
        has_parent = parent.is_valid
        trace_id = parent.trace_id if has_parent else self._ids.generate_trace_id()
        # The instrumentation's name: the statement's first word and the database.
        words = statement.split(None, 1)
        name = f"{words[0]}{self._suffix}" if words else self._vendor
        attributes = dict(self._shared_attributes)
        attributes["db.statement"] = statement
        state = parent.trace_state if has_parent else _EMPTY_STATE
        if self._sampler is not None:
            ctx = trace.set_span_in_context(trace.NonRecordingSpan(parent)) if has_parent else None
            result = self._sampler.should_sample(ctx, trace_id, name, SpanKind.CLIENT, attributes)
            if result.decision is not Decision.RECORD_AND_SAMPLE:
                return
            state = result.trace_state or state
        status = _OK
        if error is not None:
            # The type only: a driver's message can quote parameter values.
            status = Status(StatusCode.ERROR, type(error).__name__)
        span = ReadableSpan(
            name=name,
            context=SpanContext(trace_id, self._ids.generate_span_id(), False, _SAMPLED, state),
            parent=parent if has_parent else None,
            resource=self._resource,
            attributes=attributes,
            kind=SpanKind.CLIENT,
            instrumentation_scope=_SCOPE,
            status=status,
            start_time=start_ns,
            end_time=end_ns,
        )
        for processor in self._processors:
            processor.on_end(span)


class StatementSpans:
    """Records a CLIENT span for each failed or slow statement of one engine.

    Args:
        engine: the (sync) engine whose events are listened to.
        provider: where the resource, id generator and sampler come from.
        processors: receive each finished span (`on_end`), in order.
        min_duration_ms: statements faster than this (and successful) make no span.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        provider: TracerProvider,
        processors: Sequence[SpanProcessor],
        min_duration_ms: float,
    ) -> None:
        self._recorder = StatementRecorder(
            _engine_attributes(engine),
            provider=provider,
            processors=processors,
            min_duration_ms=min_duration_ms,
        )
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "handle_error", self._failed)

    def _before(
        self,
        conn: Connection,
        _cursor: Any,
        _statement: str,
        _parameters: Any,
        context: Any,
        _executemany: bool,
    ) -> None:
        conn.info[_STARTED] = (context, self._recorder.start())

    def _after(
        self,
        conn: Connection,
        _cursor: Any,
        statement: str,
        _parameters: Any,
        context: Any,
        _executemany: bool,
    ) -> None:
        entry = conn.info.pop(_STARTED, None)
        if entry is not None and entry[0] is context:
            self._recorder.end(entry[1], statement)

    def _failed(self, context: ExceptionContext) -> None:
        conn = context.connection
        try:
            entry = None if conn is None else conn.info.pop(_STARTED, None)
        except Exception:  # a broken connection: no span, and never a different error
            return
        if entry is not None and entry[0] is context.execution_context:
            self._recorder.end(
                entry[1], context.statement or "", context.original_exception or Exception()
            )
