"""AuditTableWriter on PostgreSQL: a batch is one INSERT, and stays all or nothing.

On PostgreSQL the writer appends through one autocommit connection of its
own (shared/audit/sink.py): a batch is one statement, its own transaction,
with no pre-ping, BEGIN or COMMIT around it (bench/README.md, P5). What that
must not cost: a batch the database refuses stores none of its rows (so a
retried batch never stores one twice), and a connection the server closed
costs a retry, not an event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import Pool

from shared.audit.events import audit_event
from shared.audit.sink import AuditTableWriter, attach, detach
from shared.audit.store import AUDIT_TABLE, AuditQuery, AuditStore
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
    """What every new PostgreSQL connection of this process sends outside
    prepared statements (asyncpg's query log): BEGIN, COMMIT, ROLLBACK and
    the pre-ping's ";" go there, and so does an executemany."""
    sent: list[str] = []

    def log(dbapi_connection: Any, _record: Any) -> None:
        driver = dbapi_connection.driver_connection
        driver.add_query_logger(lambda q: sent.append(q.query.split()[0].upper()))

    event.listen(Pool, "connect", log)
    yield sent
    event.remove(Pool, "connect", log)


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
        _emit(3)  # one batch: the writer runs once this test awaits
        await writer.flush()
        _emit(2, start=3)
        await writer.flush()
        await asyncio.sleep(0.05)  # asyncpg calls its loggers with call_soon
        assert wire == ["INSERT", "INSERT"]
    finally:
        detach(writer.handler)
        await writer.aclose()
    assert [r["details"]["seq"] for r in await _stored(engine)] == [0, 1, 2, 3, 4]


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
