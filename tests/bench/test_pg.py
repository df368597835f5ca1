"""The bench's own PostgreSQL databases (bench/pg.py), on the machine's real server.

A run starts from empty databases of its own and leaves none behind, even
when a service still holds connections at the end.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import asyncpg
import pytest

from bench.pg import DEFAULT_ADMIN_DSN, PgDatabases, database_dsn

ADMIN = os.environ.get("TEST_PG_DSN", DEFAULT_ADMIN_DSN)


@pytest.fixture
def dbs() -> Iterator[PgDatabases]:
    databases = PgDatabases(ADMIN)
    yield databases
    databases.drop_all()


def test_database_dsn_points_the_admin_dsn_at_the_database() -> None:
    admin = "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable"
    assert database_dsn(admin, "idp_bench_ab_auth") == (
        "postgresql://postgres@127.0.0.1:5432/idp_bench_ab_auth?sslmode=disable"
    )
    assert database_dsn(admin, "idp_bench_ab_auth", driver="asyncpg") == (
        "postgresql+asyncpg://postgres@127.0.0.1:5432/idp_bench_ab_auth?sslmode=disable"
    )


@pytest.mark.parametrize("name", ['x"; DROP DATABASE postgres; --', "Upper", "1st", ""])
def test_names_that_are_not_plain_identifiers_are_refused(name: str) -> None:
    # Database names go into DDL unquoted by any driver: only one shape passes.
    with pytest.raises(ValueError, match="not a bench database name"):
        database_dsn(DEFAULT_ADMIN_DSN, name)


def test_each_run_has_a_prefix_of_its_own() -> None:
    first, second = PgDatabases(ADMIN), PgDatabases(ADMIN)
    assert first.prefix != second.prefix
    assert first.name("fu-RS256") == f"{first.prefix}_fu_rs256"


def test_create_starts_from_an_empty_database(dbs: PgDatabases) -> None:
    dsn = dbs.create("auth")

    async def leave_a_table() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE TABLE leftover (id int)")
        finally:
            await conn.close()

    asyncio.run(leave_a_table())
    assert dbs.fetchval("auth", "SELECT to_regclass('leftover') IS NOT NULL") is True
    # A second create of the same name (a re-run) drops what was there.
    dbs.create("auth")
    assert dbs.fetchval("auth", "SELECT to_regclass('leftover') IS NOT NULL") is False
    assert dbs.existing() == [dbs.name("auth")]
    assert dbs.url("auth").startswith("postgresql+asyncpg://")


def test_drop_all_leaves_nothing_even_with_connections_open(dbs: PgDatabases) -> None:
    dsn = dbs.create("user")
    dbs.create("floor")

    async def hold_and_drop() -> None:
        # A service still connected at the end of a run must not block cleanup.
        conn = await asyncpg.connect(dsn)
        try:
            await asyncio.to_thread(dbs.drop_all)
        finally:
            conn.terminate()

    asyncio.run(hold_and_drop())
    assert dbs.existing() == []
    assert dbs.created == []
