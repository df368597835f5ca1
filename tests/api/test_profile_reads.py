"""Profile reads: one statement per read, the ORM's answer, on both databases.

`ProfileRepository.get` runs a Core statement on the service's read source
(shared/db/reads.py): the engine on SQLite, an asyncpg pool of its own on
PostgreSQL. These tests hold it to what an ORM read of the same database
returns, with nothing cached between reads, and on PostgreSQL to what makes
it fast: one round trip, no transaction, nothing sent when a connection goes
back to the pool; and to what makes doing without a pre-ping safe: a
connection the server closed costs a retry, not an error.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from shared.db.engine import make_engine, make_sessionmaker
from shared.db.reads import READ_POOL_SIZE, EngineReads, PoolReads, ReadSource, make_reads
from user_service.models import Profile
from user_service.repositories.profiles import ProfileRepository
from user_service.schemas import ProfileOut, ProfileUpsert

pytestmark = pytest.mark.anyio


async def _engines(url: str) -> AsyncIterator[tuple[AsyncEngine, ReadSource]]:
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(
            lambda c: SQLModel.metadata.create_all(c, tables=[Profile.__table__])  # type: ignore[attr-defined]
        )
    reads = make_reads(engine)
    yield engine, reads
    await reads.aclose()
    await engine.dispose()


@pytest.fixture
async def engines(db_urls: dict[str, str]) -> AsyncIterator[tuple[AsyncEngine, ReadSource]]:
    """The engine and the read source, once on SQLite and once on PostgreSQL."""
    async for pair in _engines(db_urls["user"]):
        yield pair


@pytest.fixture
async def pg_engines(
    pg_databases: dict[str, str],
) -> AsyncIterator[tuple[AsyncEngine, PoolReads]]:
    async for engine, reads in _engines(pg_databases["user"]):
        assert isinstance(reads, PoolReads)
        yield engine, reads


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
    engines: tuple[AsyncEngine, ReadSource],
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


async def _one_profile(
    engine: AsyncEngine, reads: ReadSource
) -> tuple[ProfileRepository, uuid.UUID]:
    """A repository on `reads` and the id of the one profile it was given."""
    repo = ProfileRepository(make_sessionmaker(engine), reads)
    pid = uuid.uuid4()
    await repo.upsert(_body(pid))
    return repo, pid


def test_each_database_gets_its_read_source() -> None:
    sqlite = make_engine("sqlite+aiosqlite:///:memory:")
    postgres = make_engine("postgresql+asyncpg://u@127.0.0.1:5432/db")
    pooled = make_engine("postgresql+asyncpg://u@127.0.0.1:6432/db?pool_mode=transaction")
    assert isinstance(make_reads(sqlite), EngineReads)
    assert isinstance(make_reads(postgres), PoolReads)
    # Behind a transaction pooler, reads keep the engine's transactions.
    assert isinstance(make_reads(pooled), EngineReads)


@pytest.mark.postgres
async def test_on_postgres_a_read_is_one_statement_and_nothing_else(
    pg_engines: tuple[AsyncEngine, PoolReads],
) -> None:
    engine, reads = pg_engines
    repo, pid = await _one_profile(engine, reads)
    assert await repo.get(pid) is not None  # opens the pool and one connection
    pool = reads.pool
    assert pool is not None
    sent: list[str] = []
    # The pool hands out its most recently used connection first: the one
    # the reads below get. asyncpg's query log sees every statement sent on
    # it, a transaction's BEGIN or a release's reset included.
    async with pool.acquire() as conn:
        conn.add_query_logger(lambda q: sent.append(q.query.split()[0]))
    for _ in range(3):
        assert await repo.get(pid) is not None
    await asyncio.sleep(0.05)  # asyncpg calls its loggers with call_soon
    assert sent == ["SELECT"] * 3
    # And the log does see what a transaction would send.
    async with pool.acquire() as conn, conn.transaction():
        await conn.fetchval("SELECT 1")
    await asyncio.sleep(0.05)
    assert sent == ["SELECT"] * 3 + ["BEGIN;", "SELECT", "COMMIT;"]


@pytest.mark.postgres
async def test_concurrent_reads_share_a_bounded_pool(
    pg_engines: tuple[AsyncEngine, PoolReads],
) -> None:
    engine, reads = pg_engines
    repo, pid = await _one_profile(engine, reads)
    answers = await asyncio.gather(*(repo.get(pid) for _ in range(4 * READ_POOL_SIZE)))
    assert all(a is not None and a.id == pid for a in answers)
    assert reads.pool is not None
    assert 1 <= reads.pool.get_size() <= READ_POOL_SIZE


@pytest.mark.postgres
async def test_a_read_waits_for_a_connection_a_bounded_time(
    pg_engines: tuple[AsyncEngine, PoolReads], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection busy: the read gives up (503 in the services), none leaks."""
    engine, reads = pg_engines
    repo, pid = await _one_profile(engine, reads)
    monkeypatch.setattr("shared.db.reads._ACQUIRE_TIMEOUT_SECONDS", 0.3)
    assert await repo.get(pid) is not None  # opens the pool
    assert reads.pool is not None
    held = [await reads.pool.acquire() for _ in range(READ_POOL_SIZE)]
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await repo.get(pid)
        assert asyncio.get_running_loop().time() - started < 3
    finally:
        for conn in held:
            await reads.pool.release(conn)
    # Reads that got a connection gave it back, and the waiter that timed
    # out took none with it.
    await asyncio.gather(*(repo.get(pid) for _ in range(3 * READ_POOL_SIZE)))
    assert reads.pool.get_idle_size() == reads.pool.get_size() <= READ_POOL_SIZE


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
async def test_connections_the_server_closed_cost_a_retry_not_an_error(
    pg_engines: tuple[AsyncEngine, PoolReads],
) -> None:
    engine, reads = pg_engines
    repo, pid = await _one_profile(engine, reads)
    # Several pooled connections, as under load.
    await asyncio.gather(*(repo.get(pid) for _ in range(READ_POOL_SIZE)))
    assert reads.pool is not None
    assert reads.pool.get_size() > 1
    assert await _terminate_other_connections(engine) > 1
    # Every pooled connection is dead (as after a server restart). The first
    # read notices, expires them all and retries on a fresh one; the reads
    # after it never meet a dead connection.
    for _ in range(READ_POOL_SIZE):
        read = await repo.get(pid)
        assert read is not None
        assert read.id == pid


@pytest.mark.postgres
async def test_a_database_that_is_down_is_an_operational_error(
    pg_engines: tuple[AsyncEngine, PoolReads],
) -> None:
    """Mapped to 503 like every SQLAlchemy error (shared/http/unavailable.py)."""
    engine, _ = pg_engines
    statement_timeout_ms = 200
    reads = make_reads(engine, statement_timeout_ms=statement_timeout_ms)
    repo, pid = await _one_profile(engine, reads)
    try:
        # A lock held past the statement timeout: the server cancels the read.
        async with engine.connect() as conn:
            await conn.execute(text("LOCK TABLE profiles IN ACCESS EXCLUSIVE MODE"))
            with pytest.raises(OperationalError) as caught:
                await repo.get(pid)
            await conn.rollback()
        assert "canceling statement due to statement timeout" in str(caught.value)
        assert str(pid) not in str(caught.value)  # no parameters in the message
        assert await repo.get(pid) is not None  # and the pool still serves
    finally:
        await reads.aclose()
