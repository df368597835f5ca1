"""AuditTableWriter on PostgreSQL: a batch is one INSERT, and stays all or nothing.

On PostgreSQL the writer appends through one asyncpg connection of its own,
without SQLAlchemy in the per-batch path (shared/db/appends.py): a batch is
one statement, its own transaction, with no pre-ping, BEGIN or COMMIT around
it (bench/README.md, P5, P13). What that must not cost: a row stored other
than the engine stores it, a batch the database refuses storing some of its
rows (a retried batch would store them twice), a connection the server
closed costing an event instead of a retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import Text, cast, event, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import Pool

from shared.audit.events import AUDIT_LOGGER, audit_event
from shared.audit.sink import AuditTableWriter, attach, detach
from shared.audit.store import AUDIT_TABLE, AuditQuery, AuditStore, row_from_record
from shared.db.engine import make_engine

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

SERVICE = "pg-writer-test"


@pytest.fixture
async def engine(db_urls: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(db_urls["auth"])
    async with engine.begin() as conn:
        await conn.run_sync(AUDIT_TABLE.create)
    yield engine
    # The database outlives this test (tests/conftest.py `pg_databases`); a
    # table left here, outside any migration, would stop the next service
    # that migrates it.
    async with engine.begin() as conn:
        await conn.run_sync(AUDIT_TABLE.drop)
    await engine.dispose()


@pytest.fixture
def wire() -> Iterator[list[str]]:
    """What every new engine connection of this process sends (asyncpg's
    query log): BEGIN, COMMIT, ROLLBACK and the pre-ping's ";" go there, and
    so does every statement. The writer's own connection is logged by the
    test itself."""
    sent: list[str] = []

    def log(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(_first_word(sent))

    event.listen(Pool, "connect", log)
    yield sent
    event.remove(Pool, "connect", log)


def _first_word(into: list[str]) -> Any:
    return lambda q: into.append(q.query.split()[0].upper())


class Drops:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, n: int) -> None:
        self.count += n


def _emit(n: int, *, start: int = 0, **fields: Any) -> None:
    for i in range(start, start + n):
        audit_event("writer.test", outcome="success", service=SERVICE, seq=i, **fields)


async def _stored(engine: AsyncEngine) -> list[dict[str, Any]]:
    rows, _ = await AuditStore(engine).page(AuditQuery(limit=10_000))
    return rows[::-1]  # oldest first


async def _log_the_writers_connection(writer: AuditTableWriter, into: list[str]) -> None:
    """Store event 0, which opens the writer's connection, then log what it sends."""
    _emit(1)
    await writer.flush()
    assert writer.direct is not None
    assert writer.direct.connection is not None
    writer.direct.connection.add_query_logger(_first_word(into))


@pytest.mark.parametrize("db_urls", ["postgres"], indirect=True)
async def test_a_batch_is_one_insert_without_a_transaction_or_pre_ping(
    wire: list[str], engine: AsyncEngine
) -> None:
    # `wire` sees every connection made since it was set up; what the fixture
    # sent making the table is not the writer's.
    wire.clear()
    writer = AuditTableWriter(engine, service=SERVICE)
    await writer.start()
    attach(writer.handler)
    try:
        await _log_the_writers_connection(writer, wire)
        _emit(3, start=1)  # one batch: the writer runs once this test awaits
        await writer.flush()
        _emit(2, start=4)
        await writer.flush()
        await asyncio.sleep(0.05)  # asyncpg calls its loggers with call_soon
        # Nothing through the engine (no checkout, no pre-ping), and on the
        # writer's connection one INSERT a batch: no BEGIN, no COMMIT.
        assert wire == ["INSERT", "INSERT"]
    finally:
        detach(writer.handler)
        await writer.aclose()
    assert [r["details"]["seq"] for r in await _stored(engine)] == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("db_urls", ["postgres"], indirect=True)
async def test_events_a_moment_apart_share_one_batch(wire: list[str], engine: AsyncEngine) -> None:
    # Requests finish one at a time, so without the writer's linger each
    # event that arrives while the loop is idle is a batch of its own: a
    # transaction and a commit per row (bench/README.md, P15).
    # A long linger: a loaded machine's 2 ms sleeps must not outlast it.
    writer = AuditTableWriter(engine, service=SERVICE, linger_seconds=0.5)
    await writer.start()
    attach(writer.handler)
    try:
        wire.clear()
        await _log_the_writers_connection(writer, wire)
        for i in range(1, 6):
            _emit(1, start=i)
            await asyncio.sleep(0.002)  # the writer is free to run in between
        await writer.flush()
        await asyncio.sleep(0.05)  # asyncpg calls its loggers with call_soon
        assert wire == ["INSERT"]
    finally:
        detach(writer.handler)
        await writer.aclose()
    assert [r["details"]["seq"] for r in await _stored(engine)] == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("db_urls", ["postgres"], indirect=True)
async def test_a_close_during_the_linger_writes_what_it_holds(engine: AsyncEngine) -> None:
    drops = Drops()
    writer = AuditTableWriter(engine, service=SERVICE, on_drop=drops, linger_seconds=0.5)
    await writer.start()
    attach(writer.handler)
    try:
        _emit(3)
        await asyncio.sleep(0.01)  # the writer holds the rows, lingering
    finally:
        detach(writer.handler)
        await writer.aclose()
    assert [r["details"]["seq"] for r in await _stored(engine)] == [0, 1, 2]
    assert drops.count == 0


@pytest.mark.parametrize("db_urls", ["postgres"], indirect=True)
async def test_a_batch_the_database_refuses_stores_none_of_its_rows(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "ALTER TABLE audit_events ADD CONSTRAINT refuse_one"
                " CHECK (reason IS DISTINCT FROM 'refused')"
            )
        )
    drops = Drops()
    writer = AuditTableWriter(engine, service=SERVICE, on_drop=drops, retry_delays=(0.01, 0.01))
    await writer.start()
    attach(writer.handler)
    try:
        # One batch whose middle row breaks the constraint, tried three times.
        _emit(1)
        audit_event("writer.test", outcome="failure", service=SERVICE, reason="refused", seq=1)
        _emit(1, start=2)
        await writer.flush()
        assert drops.count == 3
        assert await _stored(engine) == []  # not one row of it, after three attempts
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE audit_events DROP CONSTRAINT refuse_one"))
        _emit(2, start=3)
        await writer.flush()
    finally:
        detach(writer.handler)
        await writer.aclose()
    assert [r["details"]["seq"] for r in await _stored(engine)] == [3, 4]
    assert drops.count == 3


@pytest.mark.parametrize("db_urls", ["postgres"], indirect=True)
async def test_a_connection_the_server_closed_costs_a_retry_not_an_event(
    engine: AsyncEngine,
) -> None:
    drops = Drops()
    writer = AuditTableWriter(engine, service=SERVICE, on_drop=drops, retry_delays=(0.05,))
    await writer.start()
    attach(writer.handler)
    try:
        _emit(1)
        await writer.flush()  # the writer's connection now exists
        async with engine.connect() as conn:
            closed = await conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            assert closed.scalar_one() >= 1
        _emit(2, start=1)
        await writer.flush()
    finally:
        detach(writer.handler)
        await writer.aclose()
    assert [r["details"]["seq"] for r in await _stored(engine)] == [0, 1, 2]
    assert drops.count == 0


async def _as_text(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    """Every stored row as PostgreSQL renders it, the key aside, oldest first."""
    c = AUDIT_TABLE.c
    when = func.to_char(func.timezone("UTC", c.time), "YYYY-MM-DD HH24:MI:SS.US")
    rest = [cast(col, Text) for col in AUDIT_TABLE.columns if col.name not in ("id", "time")]
    async with engine.connect() as conn:
        result = await conn.execute(select(when, *rest).order_by(c.id))
        return [tuple(r) for r in result]


@pytest.mark.parametrize("db_urls", ["postgres"], indirect=True)
async def test_rows_are_stored_as_the_engine_stores_them(engine: AsyncEngine) -> None:
    """Time zones, the details JSON, cut strings, NULLs: the writer's rows and
    the engine's `insert` of the same events are the same, byte for byte."""
    records: list[dict[str, Any]] = [
        {
            "event": "login",
            "outcome": "success",
            "time": "2026-12-07T13:45:01.123456+02:00",  # stored as 11:45 UTC
            "user_id": "u-1",
            "user_agent": "Ä" * 300,  # cut to 256
            "amr": ["pwd", "otp"],
            "nested": {"ünï": "cödé", "n": 1.5, "none": None, "t": True},
        },
        {"event": "logout", "outcome": "failure", "time": "2026-12-07T10:00:00"},  # naive: UTC
        {
            "event": "x" * 80,
            "outcome": None,
            "time": "2026-01-01T00:00:00.5Z",
            "reason": "quote ' and \\ and \"",
            "n": 7,
        },
    ]
    rows = [row_from_record(r, service=SERVICE) for r in records]
    await AuditStore(engine).insert_many(rows)
    by_engine = await _as_text(engine)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_events"))

    writer = AuditTableWriter(engine, service=SERVICE)
    await writer.start()
    attach(writer.handler)
    try:
        assert writer.direct is not None  # the asyncpg path, not the engine
        for record in records:  # as `audit_event` logs them, times included
            logging.getLogger(AUDIT_LOGGER).info(
                "e", extra={"audit": {**record, "service": SERVICE}}
            )
        await writer.flush()
    finally:
        detach(writer.handler)
        await writer.aclose()
    by_writer = await _as_text(engine)
    assert len(by_writer) == 3
    assert by_writer == by_engine
    assert by_writer[0][0] == "2026-12-07 11:45:01.123456"
    assert by_writer[0][8] == "Ä" * 256  # user_agent, cut
    # No details: JSON null (the JSON type's way with None), as the engine stores it.
    assert by_writer[1][1:] == ("logout", "failure", SERVICE, *([None] * 7), "null")


@pytest.mark.parametrize("db_urls", ["postgres"], indirect=True)
async def test_a_database_the_writer_cannot_reach_costs_counted_events(
    engine: AsyncEngine,
) -> None:
    """No server at the address: each batch is retried, then counted, and the
    writer goes on (and stops) as usual."""
    unreachable = make_engine(engine.url.set(port=1).render_as_string(hide_password=False))
    drops = Drops()
    writer = AuditTableWriter(unreachable, service=SERVICE, on_drop=drops, retry_delays=(0.01,))
    await writer.start()
    attach(writer.handler)
    try:
        assert writer.direct is not None
        _emit(2)
        await writer.flush()
        assert drops.count == 2
    finally:
        detach(writer.handler)
        await writer.aclose()
        await unreachable.dispose()


@pytest.mark.parametrize("db_urls", ["postgres"], indirect=True)
async def test_behind_a_transaction_pooler_the_writer_keeps_the_engine(
    engine: AsyncEngine,
) -> None:
    """`pool_mode=transaction` (PgBouncer): a statement outside a transaction
    may be prepared on one server connection and run on another, so batches
    stay in the engine's transactions (tests/api/test_pgbouncer.py)."""
    pooled = make_engine(
        engine.url.render_as_string(hide_password=False) + "?pool_mode=transaction"
    )
    writer = AuditTableWriter(pooled, service=SERVICE)
    await writer.start()
    attach(writer.handler)
    try:
        assert writer.direct is None
        _emit(2)
        await writer.flush()
    finally:
        detach(writer.handler)
        await writer.aclose()
        await pooled.dispose()
    assert [r["details"]["seq"] for r in await _stored(engine)] == [0, 1]
