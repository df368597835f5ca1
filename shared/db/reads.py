"""Row lookups by one key column: one statement on the read engine, on every database.

The per-request reads (a profile by id, an identity by id or email, whether
an account has a passkey) used to go through an ORM session each: a session,
an identity map, an ORM load, and on PostgreSQL a transaction around one
SELECT (bench/README.md, "Changes measured on PostgreSQL"). A `KeyedReader`
is a SQLAlchemy Core `select` built once, so its compiled form is cached
after the first call, executed on a connection of the read engine
(`shared.db.engine.make_read_engine`: autocommit on PostgreSQL, one round
trip) and returned as a plain mapping. Nothing is cached between calls:
every read sees every commit made before it.

The same code runs on SQLite and PostgreSQL; only the engine differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Column, RowMapping, Table, bindparam, literal, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable, Select

__all__ = ["KeyedReader", "read_first"]


async def read_first(
    engine: AsyncEngine, statement: Executable, params: Mapping[str, Any]
) -> RowMapping | None:
    """Run one read-only statement on the read engine; its first row as a mapping, or None.

    One retry, only when the connection turned out dead (the server
    restarted, a proxy dropped it): SQLAlchemy has then invalidated the
    pool, so the retry gets a fresh connection. The read engine has no
    pre-ping (shared.db.engine.make_read_engine says why); a read is safe
    to repeat. Build `statement` once and reuse it: its compiled form is
    then cached.
    """
    for attempt in (1, 2):
        try:
            async with engine.connect() as conn:
                result = await conn.execute(statement, params)
                row: RowMapping | None = result.mappings().first()
                return row
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")


class KeyedReader:
    """Reads rows of `table` by one key column.

    Args:
        engine: the read engine (not owned).
        table: the table to read.
        key: the column to look up by; the single-column primary key when
            omitted. `get` expects it to be unique (it returns the first row).
        columns: the columns to return; all of the table's when omitted.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        table: Table,
        *,
        key: Column[Any] | None = None,
        columns: list[str] | None = None,
    ) -> None:
        if key is None:
            (key,) = table.primary_key.columns
        elif key.table is not table:
            raise ValueError(f"{key} is not a column of {table.name}")
        self._engine = engine
        chosen = [table.c[name] for name in columns] if columns else list(table.columns)
        # Built once: SQLAlchemy memoises the statement's cache key on the
        # object, so every call after the first reuses the compiled SQL.
        where = key == bindparam("key")
        self._get: Select[Any] = select(*chosen).where(where)
        self._exists: Select[Any] = select(literal(1)).where(where).limit(1)

    async def get(self, key: object) -> RowMapping | None:
        """The row as a read-only mapping {column: value}, or None when absent."""
        return await self._execute(self._get, key)

    async def exists(self, key: object) -> bool:
        """Whether a row has this key."""
        return await self._execute(self._exists, key) is not None

    async def _execute(self, statement: Select[Any], key: object) -> RowMapping | None:
        return await read_first(self._engine, statement, {"key": key})
