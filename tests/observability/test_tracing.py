"""OpenTelemetry spans in process: one trace across both services, and what it holds."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import SpanKind
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

from shared.db.engine import make_engine
from shared.db.reads import KeyedReader, make_reads
from shared.observability.tracing import Tracing
from tests.conftest import REDIS_URL, Services, new_user
from tests.observability.conftest import AuditCapture, capture_spans, service_of
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
        spans = InMemorySpanExporter()
        tracing.add_processor(SimpleSpanProcessor(spans))
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
async def test_pooled_reads_are_traced_once_something_receives_the_spans(
    pg_databases: dict[str, str],
) -> None:
    # The PostgreSQL read pool (shared/db/reads.py) bypasses the engine and
    # its instrumentation, so it makes its own client span per read: the
    # statement with its placeholder, the database and the peer, never the key.
    tracing = Tracing(service_name="t", version="0")
    engine = make_engine(pg_databases["user"])
    async with engine.begin() as conn:
        await conn.run_sync(
            lambda c: SQLModel.metadata.create_all(c, tables=[Profile.__table__])  # type: ignore[attr-defined]
        )
    reads = make_reads(engine)
    reader = KeyedReader(reads, Profile.__table__)  # type: ignore[attr-defined]
    tracing.instrument_reads(reads)
    spans = InMemorySpanExporter()
    key = uuid.uuid4()
    try:
        assert await reader.get(key) is None
        tracing.add_processor(SimpleSpanProcessor(spans))
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
    finally:
        await reads.aclose()
        await engine.dispose()
        tracing.shutdown()
