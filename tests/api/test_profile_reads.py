"""Profile reads: one statement on the read engine, the ORM's answer, on both databases.

`ProfileRepository.get` runs a Core statement on the read engine
(shared/db/reads.py, shared/db/engine.py `make_read_engine`). These tests hold
it to what an ORM read of the same database returns, with nothing cached
between reads, and on PostgreSQL to what makes it fast: one round trip, no
transaction, no pre-ping; and to what makes dropping the pre-ping safe: a
connection the server closed costs a retry, not an error.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from shared.db.engine import READ_POOL_SIZE, make_engine, make_read_engine, make_sessionmaker
from user_service.models import Profile
from user_service.repositories.profiles import ProfileRepository
from user_service.schemas import ProfileOut, ProfileUpsert

pytestmark = pytest.mark.anyio


async def _engines(url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(
            lambda c: SQLModel.metadata.create_all(c, tables=[Profile.__table__])  # type: ignore[attr-defined]
        )
    reads = make_read_engine(engine)
    yield engine, reads
    if reads is not engine:
        await reads.dispose()
    await engine.dispose()


@pytest.fixture
async def engines(db_urls: dict[str, str]) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """The engine and the read engine, once on SQLite and once on PostgreSQL."""
    async for pair in _engines(db_urls["user"]):
        yield pair


@pytest.fixture
async def pg_engines(
    pg_databases: dict[str, str],
) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    async for pair in _engines(pg_databases["user"]):
        yield pair


def _body(pid: uuid.UUID) -> ProfileUpsert:
    return ProfileUpsert(
        id=pid,
        name="Ada Lovelace",
        email="ada@example.com",
        date_of_birth=dt.date(1980, 12, 10),
        job_title="Analyst",
        created_at=dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC),
    )


async def test_read_matches_the_orm_and_sees_every_commit(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    engine, reads = engines
    sessions = make_sessionmaker(engine)
    repo = ProfileRepository(sessions, reads)
    pid = uuid.uuid4()
    assert await repo.get(pid) is None
    await repo.upsert(_body(pid))
    read = await repo.get(pid)
    async with sessions() as s:
        orm = await s.get(Profile, pid)
    assert read is not None
    assert orm is not None
    assert read == ProfileOut.model_validate(orm, from_attributes=True)
    assert read.created_at == dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    # No caching: an update is visible to the very next read.
    await repo.upsert(_body(pid).model_copy(update={"job_title": "Engineer"}))
    again = await repo.get(pid)
    assert again is not None
    assert again.job_title == "Engineer"


@pytest.mark.postgres
async def test_on_postgres_a_read_is_one_statement_without_a_transaction(
    pg_engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    engine, reads = pg_engines
    assert reads is not engine
    repo = ProfileRepository(make_sessionmaker(engine), reads)
    pid = uuid.uuid4()
    await repo.upsert(_body(pid))
    assert await repo.get(pid) is not None  # the pool's one connection, reused below
    sent: list[str] = []  # what the driver sends outside prepared statements
    async with reads.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
    # asyncpg's own query log: BEGIN, ROLLBACK and the pre-ping's ";" go
    # through it (prepared statements, which SQLAlchemy uses, do not).
    driver.add_query_logger(lambda q: sent.append(q.query.split()[0]))
    statements: list[str] = []

    @event.listens_for(reads.sync_engine, "before_cursor_execute")
    def _statement(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        statements.append(statement.split()[0])

    for _ in range(3):
        assert await repo.get(pid) is not None
    await asyncio.sleep(0.05)  # asyncpg calls its loggers with call_soon
    assert statements == ["SELECT"] * 3
    assert sent == []
    # The log does see what a transaction or a pre-ping would send.
    await driver.execute("BEGIN")
    await driver.execute("ROLLBACK")
    await asyncio.sleep(0.05)
    assert sent == ["BEGIN", "ROLLBACK"]
    assert reads.pool.size() == READ_POOL_SIZE


async def _terminate_other_connections(engine: AsyncEngine) -> int:
    """Close, from the server side, every other connection to the engine's database."""
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        return int(result.scalar_one())


@pytest.mark.postgres
async def test_a_connection_the_server_closed_costs_a_retry_not_an_error(
    pg_engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    engine, reads = pg_engines
    repo = ProfileRepository(make_sessionmaker(engine), reads)
    pid = uuid.uuid4()
    await repo.upsert(_body(pid))
    assert await repo.get(pid) is not None  # a pooled connection now exists
    assert await _terminate_other_connections(engine) >= 1
    # The pooled connection is dead; the read notices, retries once on a
    # fresh connection, and answers.
    read = await repo.get(pid)
    assert read is not None
    assert read.id == pid
