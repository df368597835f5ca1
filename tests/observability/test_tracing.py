"""OpenTelemetry spans in process: one trace across both services, and what it holds."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis.asyncio
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

from shared.db.engine import make_engine
from shared.db.reads import KeyedReader, make_reads
from shared.observability.tracing import Tracing
from tests.conftest import PG_ADMIN_URL, REDIS_URL, Services, new_user, start_services
from tests.observability.conftest import (
    AuditCapture,
    account,
    bearer,
    capture_spans,
    service_of,
)
from user_service.models import Profile

pytestmark = pytest.mark.anyio


async def test_a_registration_is_one_trace_across_both_services(
    services: Services, audit: AuditCapture
) -> None:
    spans = capture_spans(services.auth_app, services.user_app)
    r = await services.auth.post("/users", json=new_user())
    assert r.status_code == 201
    await services.auth_app.state.obs.flush_audit()

    finished = spans.get_finished_spans()
    auth_server = next(
        s for s in finished if s.kind == SpanKind.SERVER and service_of(s) == "auth-service"
    )
    trace_id = auth_server.context.trace_id
    in_trace = [s for s in finished if s.context.trace_id == trace_id]
    assert {service_of(s) for s in in_trace} == {"auth-service", "user-service"}
    assert auth_server.name == "POST /users"  # the route template, never the raw path

    # The user service's span is a child of the auth service's httpx client
    # span. (In process the context rides along in contextvars, so the span is
    # INTERNAL; across real processes it is the W3C header: test_otlp_e2e.)
    user_server = next(
        s
        for s in in_trace
        if s.name == "POST /internal/profiles" and service_of(s) == "user-service"
    )
    client = next(
        s
        for s in in_trace
        if s.kind == SpanKind.CLIENT
        and str((s.attributes or {}).get("http.url", "")).endswith("/internal/profiles")
    )
    assert user_server.parent is not None
    assert user_server.parent.span_id == client.context.span_id
    # SQL on both sides, inside the trace.
    sql = [s for s in in_trace if s.attributes and "db.system" in str(s.attributes)]
    assert {service_of(s) for s in sql} == {"auth-service", "user-service"}

    # The audit event of the registration names the same trace.
    (event,) = audit.named("user.register")
    assert event["trace_id"] == format(trace_id, "032x")
    # The audit writer's own INSERTs are not traced.
    assert not [s for s in finished if "audit_events" in str(s.attributes)]


async def test_redis_calls_are_traced_without_arguments(services: Services) -> None:
    body = new_user()
    await services.auth.post("/users", json=body)
    spans = capture_spans(services.auth_app)
    login = await services.auth.post(
        "/login", json={"email": body["email"], "password": body["password"]}
    )
    assert login.status_code == 200
    redis = [
        s
        for s in spans.get_finished_spans()
        if s.attributes and s.attributes.get("db.system") == "redis"
    ]
    assert redis, [s.name for s in spans.get_finished_spans()]
    for span in redis:
        statement = str(span.attributes.get("db.statement", "")) if span.attributes else ""
        # "EVALSHA ? ? ..." : key names and values never reach the span.
        assert body["email"] not in statement
        assert services.auth_settings.redis_prefix not in statement


def test_nothing_is_exported_without_an_endpoint() -> None:
    quiet = Tracing(service_name="t", version="0")
    assert not quiet.exporting
    loud = Tracing(service_name="t", version="0", otlp_endpoint="http://127.0.0.1:9")
    assert loud.exporting
    loud.shutdown()
    quiet.shutdown()


async def test_redis_spans_are_made_only_while_something_receives_them() -> None:
    # No exporter: tracing is on for its ids; a Redis span would be built and
    # dropped. Attaching a processor (an exporter, a test) turns them on.
    tracing = Tracing(service_name="t", version="0")
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    tracing.instrument_redis(client)
    try:
        await client.ping()
        # Not even wrapped yet (the wrapper is set on the instance): it cost
        # CPU on every command for nothing.
        assert "execute_command" not in vars(client)
        spans = InMemorySpanExporter()
        tracing.add_processor(SimpleSpanProcessor(spans))
        assert "execute_command" in vars(client)
        await client.ping()
        assert [s.name for s in spans.get_finished_spans()] == ["PING"]
        # The sampler's own answers, both ways.
        sampler = tracing._leaf_provider.sampler
        assert sampler.should_sample(None, 1, "PING").decision is Decision.RECORD_AND_SAMPLE
        bare = Tracing(service_name="t", version="0")._leaf_provider.sampler
        assert bare.should_sample(None, 1, "PING").decision is Decision.DROP
    finally:
        await client.aclose()
        tracing.shutdown()


async def test_sql_is_traced_only_once_something_receives_the_spans() -> None:
    # Without a processor every SQL span is dropped, so the instrumentation's
    # listeners are not even registered: they cost 7% of a profile read's
    # CPU for nothing (bench/README.md, P3). Attaching one turns them on.
    tracing = Tracing(service_name="t", version="0")
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")

    def listeners() -> int:
        return len(engine.sync_engine.dispatch.before_cursor_execute)

    tracing.instrument_engine(engine)
    try:
        assert listeners() == 0
        async with engine.connect() as conn:
            await conn.execute(text("SELECT :n"), {"n": 1})
        spans = InMemorySpanExporter()
        tracing.add_processor(SimpleSpanProcessor(spans))
        assert listeners() == 1
        async with engine.connect() as conn:
            await conn.execute(text("SELECT :n"), {"n": 41})
        (span,) = spans.get_finished_spans()
        assert span.kind is SpanKind.CLIENT
        assert span.attributes is not None
        # The statement with its placeholder, never the value.
        assert "41" not in str(span.attributes)
        # An engine instrumented after the processor is traced at once.
        other = create_async_engine("sqlite+aiosqlite:///:memory:")
        tracing.instrument_engine(other)
        assert len(other.sync_engine.dispatch.before_cursor_execute) == 1
        await other.dispose()
    finally:
        await engine.dispose()
        tracing.shutdown()


@pytest.mark.postgres
async def test_pooled_reads_follow_the_statement_rules(pg_databases: dict[str, str]) -> None:
    # The PostgreSQL read pool (shared/db/reads.py) bypasses the engine and
    # its events, so it reports its statements itself, under the engine's
    # rules: nothing before a processor is attached, then a CLIENT span for
    # each slow (TRACING_SQL_MIN_MS; 0 = every) or failed statement, with
    # its placeholder and never the key.
    engine = make_engine(pg_databases["user"])
    async with engine.begin() as conn:
        await conn.run_sync(
            lambda c: SQLModel.metadata.create_all(c, tables=[Profile.__table__])  # type: ignore[attr-defined]
        )
    key = uuid.uuid4()
    every = Tracing(service_name="t", version="0", sql_min_ms=0)
    slow_only = Tracing(service_name="t", version="0", sql_min_ms=60_000)
    sources = [make_reads(engine), make_reads(engine)]
    try:
        reads, other = sources
        reader = KeyedReader(reads, Profile.__table__)  # type: ignore[attr-defined]
        every.instrument_reads(reads)
        spans = InMemorySpanExporter()
        assert await reader.get(key) is None
        every.add_processor(SimpleSpanProcessor(spans))
        assert spans.get_finished_spans() == ()  # nothing was made before
        assert await reader.get(key) is None
        (span,) = spans.get_finished_spans()
        assert span.kind is SpanKind.CLIENT
        assert span.attributes is not None
        assert span.attributes["db.system"] == "postgresql"
        assert "FROM profiles WHERE profiles.id = $1" in " ".join(
            str(span.attributes["db.statement"]).split()
        )
        assert str(key) not in str(span.attributes)

        # Fast and successful: no span. Failed: a span, the error's type only.
        quiet = InMemorySpanExporter()
        slow_only.add_processor(SimpleSpanProcessor(quiet))
        slow_only.instrument_reads(other)
        assert await KeyedReader(other, Profile.__table__).get(key) is None  # type: ignore[attr-defined]
        assert quiet.get_finished_spans() == ()
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE profiles RENAME TO profiles_gone"))
        try:
            with pytest.raises(DBAPIError):
                await KeyedReader(other, Profile.__table__).get(key)  # type: ignore[attr-defined]
        finally:
            async with engine.begin() as conn:
                await conn.execute(text("ALTER TABLE profiles_gone RENAME TO profiles"))
        (failed,) = quiet.get_finished_spans()
        assert failed.status.status_code is StatusCode.ERROR
        assert str(key) not in str(failed.attributes) + str(failed.status.description)
    finally:
        for source in sources:
            await source.aclose()
        await engine.dispose()
        every.shutdown()
        slow_only.shutdown()


async def test_only_slow_or_failed_statements_make_spans() -> None:
    # TRACING_SQL_MIN_MS: a statement answered in time makes no span; one that
    # took longer does, and so does one that failed, whatever its duration.
    tracing = Tracing(service_name="t", version="0", sql_min_ms=20)
    spans = InMemorySpanExporter()
    tracing.add_processor(SimpleSpanProcessor(spans))
    engine = create_async_engine(PG_ADMIN_URL.replace("postgresql://", "postgresql+asyncpg://"))
    tracing.instrument_engine(engine)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT CAST(:n AS INTEGER)"), {"n": 1})
            assert spans.get_finished_spans() == ()
            await conn.execute(text("SELECT pg_sleep(0.05), CAST(:n AS INTEGER)"), {"n": 7331})
            (slow,) = spans.get_finished_spans()
            with pytest.raises(DBAPIError):
                await conn.execute(
                    text("SELECT * FROM no_such_table WHERE secret = :s"), {"s": "hunter2-value"}
                )
        slow, failed = spans.get_finished_spans()
        assert slow.name == "SELECT postgres"
        assert slow.kind is SpanKind.CLIENT
        assert slow.attributes is not None
        assert slow.attributes["db.system"] == "postgresql"
        assert slow.attributes["db.name"] == "postgres"
        assert slow.attributes["db.statement"] == "SELECT pg_sleep(0.05), CAST($1 AS INTEGER)"
        assert slow.end_time is not None
        assert slow.start_time is not None
        assert slow.end_time - slow.start_time >= 50_000_000
        assert "7331" not in str(slow.attributes)
        assert failed.status.status_code is StatusCode.ERROR
        # The exception's type only: a driver's message may quote a value.
        assert failed.status.description == "ProgrammingError"
        assert "hunter2" not in f"{failed.attributes} {failed.status.description} {failed.events}"
    finally:
        await engine.dispose()
        tracing.shutdown()


async def test_a_statement_span_joins_the_current_trace() -> None:
    from opentelemetry import trace

    tracing = Tracing(service_name="t", version="0")  # 0: every statement
    spans = InMemorySpanExporter()
    tracing.add_processor(SimpleSpanProcessor(spans))
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    tracing.instrument_engine(engine)
    tracer = tracing.provider.get_tracer("test")
    try:
        with tracer.start_as_current_span("request") as parent:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        statement = next(s for s in spans.get_finished_spans() if s.name.startswith("SELECT"))
        assert statement.parent is not None
        assert statement.parent.span_id == parent.get_span_context().span_id
        assert statement.context.trace_id == parent.get_span_context().trace_id
        assert statement.resource.attributes["service.name"] == "t"
        # A caller that did not sample: the statement makes no span either.
        unsampled = trace.NonRecordingSpan(
            trace.SpanContext(1, 2, is_remote=True, trace_flags=trace.TraceFlags(0))
        )
        before = len(spans.get_finished_spans())
        with trace.use_span(unsampled):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        assert len(spans.get_finished_spans()) == before
    finally:
        await engine.dispose()
        tracing.shutdown()


async def test_a_profile_read_is_one_span_as_deployed(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str]
) -> None:
    # The deployed default (TRACING_SQL_MIN_MS=10): GET /users/{id} is its
    # server span, with what an investigation uses; its fast SELECT is not a
    # second span to export.
    async for s in start_services(tmp_path=tmp_path, redis_prefix=redis_prefix, urls=sqlite_urls):
        assert s.user_settings.tracing_sql_min_ms == 10
        uid, _, tokens = await account(s)
        spans = capture_spans(s.user_app)
        r = await s.user.get(f"/users/{uid}", headers={**bearer(tokens), "User-Agent": "ua/1"})
        assert r.status_code == 200
        finished = spans.get_finished_spans()
        # (A Redis span may be there: the revocation check asks Redis until
        # the feed's subscription is up, which in process can be after this.)
        assert [
            sp.name for sp in finished if (sp.attributes or {}).get("db.system") == "sqlite"
        ] == []
        (server,) = [sp for sp in finished if sp.kind is SpanKind.SERVER]
        assert server.name == "GET /users/{user_id}"
        assert server.attributes is not None
        assert dict(server.attributes) == {
            "http.method": "GET",
            "http.target": f"/users/{uid}",
            "http.user_agent": "ua/1",
            "net.peer.ip": "127.0.0.1",
            "http.route": "/users/{user_id}",
            "http.status_code": 200,
        }


async def test_a_connection_lost_mid_statement_keeps_its_own_error() -> None:
    # The server ends the session during the statement: the caller sees the
    # driver's disconnect (which the read path retries on), and the span says
    # the statement failed; recording it never raises an error of its own.
    tracing = Tracing(service_name="t", version="0", sql_min_ms=1000)
    spans = InMemorySpanExporter()
    tracing.add_processor(SimpleSpanProcessor(spans))
    engine = create_async_engine(PG_ADMIN_URL.replace("postgresql://", "postgresql+asyncpg://"))
    tracing.instrument_engine(engine)
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as raised:
                await conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            assert raised.value.connection_invalidated
        (failed,) = spans.get_finished_spans()
        assert failed.status.status_code is StatusCode.ERROR
        async with engine.connect() as conn:  # the pool recovers; fast: no span
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
        assert len(spans.get_finished_spans()) == 1
    finally:
        await engine.dispose()
        tracing.shutdown()


def test_a_statement_is_judged_when_it_ends() -> None:
    # `StatementRecorder.start` only reads the clock; suppression, the
    # parent and its sampling decision are read in `end`, which runs in the
    # statement's own context (the same coroutine or greenlet as `start`).
    import time

    from opentelemetry import trace
    from opentelemetry.instrumentation.utils import suppress_instrumentation
    from sqlalchemy.engine import make_url

    from shared.observability.sql_spans import StatementRecorder, url_attributes

    tracing = Tracing(service_name="t", version="0")
    spans = InMemorySpanExporter()
    tracing.add_processor(SimpleSpanProcessor(spans))

    def recorder(min_ms: float) -> StatementRecorder:
        return StatementRecorder(
            url_attributes(make_url("postgresql+asyncpg://app@db.internal:5432/users")),
            provider=tracing.provider,
            processors=[SimpleSpanProcessor(spans)],
            min_duration_ms=min_ms,
        )

    every, slow_only = recorder(0), recorder(60_000)
    try:
        with suppress_instrumentation():
            every.end(every.start(), "SELECT 1")  # the audit writer's case
        slow_only.end(slow_only.start(), "SELECT 1")  # fast and successful
        assert spans.get_finished_spans() == ()

        with tracing.provider.get_tracer("test").start_as_current_span("request") as parent:
            before = time.time_ns()
            started = every.start()
            time.sleep(0.02)
            every.end(started, "SELECT id FROM profiles WHERE id = $1")
            after = time.time_ns()
        statement = next(s for s in spans.get_finished_spans() if s.name == "SELECT users")
        assert statement.parent is not None
        assert statement.parent.span_id == parent.get_span_context().span_id
        assert statement.start_time is not None
        assert statement.end_time is not None
        assert before <= statement.start_time
        assert statement.end_time <= after
        assert statement.end_time - statement.start_time >= 20_000_000

        # A caller that did not sample: nothing, however slow or failed.
        unsampled = trace.NonRecordingSpan(
            trace.SpanContext(1, 2, is_remote=True, trace_flags=trace.TraceFlags(0))
        )
        count = len(spans.get_finished_spans())
        with trace.use_span(unsampled):
            every.end(every.start(), "SELECT 1", RuntimeError("x"))
        assert len(spans.get_finished_spans()) == count
    finally:
        tracing.shutdown()
