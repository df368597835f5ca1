"""Batches of rows appended to one table on one asyncpg connection of their own.

The audit writer's path on PostgreSQL (shared/audit/sink.py). Through the
SQLAlchemy async engine a batch of one row cost ~1.5 ms of event-loop CPU, a
third of what a login costs the loop beyond its hash (bench/README.md,
"Changes measured on PostgreSQL", P5 and P13): the greenlet bridge, the pool's
checkout and events, the compiled-cache lookup, the result machinery. Here a
batch is one `executemany` of an INSERT compiled once by the engine's dialect,
with SQLAlchemy's own bind processors applied to each column, so a row is
stored exactly as the engine would store it (tests/observability/
test_audit_writer_postgres.py compares the two).

A batch is all or nothing: asyncpg runs an executemany as one implicit
transaction (atomic since 0.22; one Sync at the end, one round trip), so a
batch the database refused, retried, never stores a row twice. In-process
(P13) a batch of one cost 360 us of CPU through the engine, 120 us as an
executemany and 90 us as a plain execute of the prepared statement, which a
batch of one row uses; `INSERT ... SELECT FROM unnest(...)` was no cheaper
at one row and ~10% cheaper at twenty: not worth a second statement shape. Autocommit
otherwise: no BEGIN or COMMIT on the wire. No pre-ping: a connection found
dead is dropped and the caller's retry opens a fresh one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.asyncpg_direct import (
    CONNECTION_LOST,
    DRIVER_ERRORS,
    as_operational_error,
    connect_params,
)

__all__ = ["PgAppends"]

_CLOSE_TIMEOUT_SECONDS = 5.0
# A connection after these is dead, or in a state nobody knows (the server
# stopped answering: command_timeout; the writer was stopped mid-batch).
_NOT_REUSABLE: tuple[type[BaseException], ...] = (
    *CONNECTION_LOST,
    TimeoutError,
    asyncio.CancelledError,
)
_CLOSE_FAILED: tuple[type[BaseException], ...] = (TimeoutError, OSError, *DRIVER_ERRORS)


class PgAppends:
    """Inserts rows of `table` in batches on a connection opened at first use.

    Args:
        engine: the database's engine (not owned; its URL and dialect only).
            Meant for `shared.db.asyncpg_direct.direct_connections_fit` engines.
        table: where rows go. Every row names every column but the
            auto-incrementing key, as one multi-row `insert(table)` on the
            engine would need too.
        statement_timeout_ms: the server's per-statement limit, as the engine's.
    """

    def __init__(self, engine: AsyncEngine, table: Table, *, statement_timeout_ms: int) -> None:
        dialect = engine.dialect
        self._connect = connect_params(engine, statement_timeout_ms=statement_timeout_ms)
        keys = [str(c.key) for c in table.columns if c is not table.autoincrement_column]
        compiled = insert(table).compile(dialect=dialect, column_keys=keys)
        self._sql = str(compiled)
        self._names = list(compiled.positiontup or ())
        if sorted(self._names) != sorted(keys):
            raise ValueError(f"expected one parameter per column in {self._sql}")
        # SQLAlchemy's conversions, as its own execution applies them (JSON
        # serialised by the dialect's serializer, for one).
        processors = [
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self._names
        ]
        self._processors: list[tuple[str, Callable[[Any], Any] | None]] = list(
            zip(self._names, processors, strict=True)
        )
        self._conn: asyncpg.Connection | None = None

    @property
    def connection(self) -> asyncpg.Connection | None:
        """The connection once a batch opened it (for inspection)."""
        return self._conn

    async def insert_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store `rows`, all of them or none.

        Raises:
            sqlalchemy.exc.OperationalError: the database refused the batch
                or could not be reached; nothing of it is stored (unless the
                connection broke after the commit, as on any driver).
        """
        args = [
            tuple(row[name] if p is None else p(row[name]) for name, p in self._processors)
            for row in rows
        ]
        conn = self._conn
        if conn is None or conn.is_closed():
            # Never opened, or the server ended it while idle (asyncpg saw
            # the termination): a fresh one, no round trip spent finding out.
            conn = self._conn = await self._open()
        try:
            if len(args) == 1:
                # One statement is its own transaction; ~20% less CPU than an
                # executemany of one (the usual batch at a login a time).
                await conn.execute(self._sql, *args[0])
            else:
                await conn.executemany(self._sql, args)
        except BaseException as exc:
            if isinstance(exc, _NOT_REUSABLE) or conn.is_closed():
                # Never reused: the next batch, or this one's retry, opens
                # a fresh connection.
                self._conn = None
                conn.terminate()
            if isinstance(exc, DRIVER_ERRORS):
                # No parameters: rows carry personal data (addresses, user agents).
                raise as_operational_error(self._sql, exc) from exc
            raise

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await asyncio.wait_for(conn.close(), _CLOSE_TIMEOUT_SECONDS)
        except _CLOSE_FAILED:
            conn.terminate()

    async def _open(self) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(**self._connect)
        except DRIVER_ERRORS as exc:
            raise as_operational_error(self._sql, exc) from exc
