"""Row lookups by one key column: one statement, one round trip, on every database.

The per-request reads (a profile by id, an identity by id or email, whether
an account has a passkey, a client by id) go through a `KeyedReader`: a
SQLAlchemy Core `select` built once, run on the service's `ReadSource`, and
returned as a plain mapping. Nothing is cached between calls: every read
sees every commit made before it.

Where the statement runs (`make_reads`):

- **PostgreSQL** (`PoolReads`): an asyncpg pool of its own, with the SQL
  compiled once by the engine's dialect and SQLAlchemy's own type
  conversions applied to the key and the row, so the values are the ones
  an ORM read returns. Through the engine a read cost 2.5-4x the CPU of the
  same `fetchrow` on a bare pool (bench/README.md, "Changes measured on
  PostgreSQL", P8): the greenlet bridge, the pool's events, the result
  machinery. Autocommit: one statement is its own snapshot of committed
  data, so there is no transaction to open or end.
- **SQLite, or PostgreSQL behind a transaction pooler** (`EngineReads`): the
  write engine. SQLite begins no transaction for a SELECT and a second pool
  on an in-memory database would be another database; behind PgBouncer in
  transaction mode a statement outside a transaction may be prepared on one
  server connection and executed on another (tests/api/test_pgbouncer.py).

The same `KeyedReader` code runs on both; tests hold each to the ORM's
answer (tests/api/test_profile_reads.py, tests/auth/test_identity_reads.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import Column, Table, bindparam, literal_column, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Select

from shared.db.asyncpg_direct import (
    CONNECTION_LOST,
    DRIVER_ERRORS,
    as_operational_error,
    connect_params,
    direct_connections_fit,
)

__all__ = [
    "READ_POOL_SIZE",
    "EngineReads",
    "KeyedReader",
    "PoolReads",
    "ReadSource",
    "Row",
    "StatementTrace",
    "make_reads",
]

_log = logging.getLogger(__name__)

Row = Mapping[str, Any]
Read = Callable[[object], Awaitable[Row | None]]

# Connections of the PostgreSQL read pool: asyncpg's default, and never more,
# so a burst of reads waits for a connection instead of opening one per
# request (opening one cost ~15% of the service's CPU under load: TLS
# attempt, start-up, statements prepared again).
READ_POOL_SIZE = 10
_CLOSE_TIMEOUT_SECONDS = 5.0
_ACQUIRE_TIMEOUT_SECONDS = 5.0


class StatementTrace(Protocol):
    """Spans for statements (shared.observability.sql_spans.StatementRecorder)."""

    def start(self) -> Any | None:
        """A statement starts; None: it will not be recorded."""
        ...

    def end(self, started: Any, statement: str, error: BaseException | None = None) -> None:
        """It ended (`error`: it failed)."""
        ...


class ReadSource(Protocol):
    """Runs the statements of `KeyedReader`s (see the module's docstring)."""

    def prepare(self, statement: Select[Any]) -> Read:
        """A function running `statement` (one bind parameter named "key")."""
        ...

    @property
    def traced_url(self) -> URL | None:
        """The database whose statements `trace` would record; None: traced elsewhere."""
        ...

    def trace(self, spans: StatementTrace) -> None:
        """Record the statements from now on (as the engine's are: shared/observability)."""
        ...

    async def aclose(self) -> None: ...


def make_reads(engine: AsyncEngine, *, statement_timeout_ms: int = 5000) -> ReadSource:
    """The read source for `engine`'s database (the module's docstring says which)."""
    # Behind a transaction pooler the engine's URL names a statement cache
    # of 0 (shared.db.engine.postgres_target): reads keep its transactions.
    if direct_connections_fit(engine):
        return PoolReads(engine, statement_timeout_ms=statement_timeout_ms)
    return EngineReads(engine)


class KeyedReader:
    """Reads rows of `table` by one key column.

    Args:
        reads: where the statements run (not owned).
        table: the table to read.
        key: the column to look up by; the single-column primary key when
            omitted. `get` expects it to be unique (it returns the first row).
        columns: the columns to return; all of the table's when omitted.
    """

    def __init__(
        self,
        reads: ReadSource,
        table: Table,
        *,
        key: Column[Any] | None = None,
        columns: list[str] | None = None,
    ) -> None:
        if key is None:
            (key,) = table.primary_key.columns
        elif key.table is not table:
            raise ValueError(f"{key} is not a column of {table.name}")
        chosen = [table.c[name] for name in columns] if columns else list(table.columns)
        where = key == bindparam("key")
        self._get = reads.prepare(select(*chosen).where(where))
        # `literal_column`s, not bound values: "key" stays the one parameter.
        self._exists = reads.prepare(
            select(literal_column("1")).where(where).limit(literal_column("1"))
        )

    async def get(self, key: object) -> Row | None:
        """The row as a read-only mapping {column: value}, or None when absent."""
        return await self._get(key)

    async def exists(self, key: object) -> bool:
        """Whether a row has this key."""
        return await self._exists(key) is not None


class EngineReads:
    """Statements on an SQLAlchemy engine (SQLite; PostgreSQL behind a pooler)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def prepare(self, statement: Select[Any]) -> Read:
        engine = self.engine

        async def read(key: object) -> Row | None:
            # SQLAlchemy memoises the statement's cache key on the object, so
            # every call after the first reuses the compiled SQL.
            async with engine.connect() as conn:
                result = await conn.execute(statement, {"key": key})
                row: Row | None = result.mappings().first()
                return row

        return read

    @property
    def traced_url(self) -> URL | None:
        return None  # the engine's own instrumentation traces these statements

    def trace(self, spans: StatementTrace) -> None:
        """Nothing to do (`traced_url`)."""

    async def aclose(self) -> None:
        """Nothing to do: the engine belongs to the service."""


class PoolReads:
    """Statements on an asyncpg pool of their own, on the engine's database.

    The pool connects with the engine's URL (its dialect's own translation,
    TLS options included) and the write engine's timeouts, opens on the
    first read (so building a service needs no running loop and no database)
    and holds at most `READ_POOL_SIZE` connections.
    """

    def __init__(self, engine: AsyncEngine, *, statement_timeout_ms: int) -> None:
        self._dialect = engine.dialect
        self._connect = connect_params(engine, statement_timeout_ms=statement_timeout_ms)
        self._url = engine.url
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._spans: StatementTrace | None = None

    def prepare(self, statement: Select[Any]) -> Read:
        compiled = statement.compile(
            dialect=self._dialect, compile_kwargs={"render_postcompile": True}
        )
        # One parameter, "key", which a statement may use more than once.
        positions = list(compiled.positiontup or ())
        if not positions or set(positions) != {"key"}:
            raise ValueError(f"expected bind parameters named 'key' only in {compiled}")
        repeats = len(positions)
        sql = str(compiled)
        dialect = self._dialect
        # SQLAlchemy's type conversions, as its own execution would apply them
        # (a UTC datetime column, for one, is stored naive and read aware).
        to_db = compiled.binds["key"].type.dialect_impl(dialect).bind_processor(dialect)
        names = [str(c.key) for c in statement.selected_columns]
        from_db = [
            c.type.dialect_impl(dialect).result_processor(dialect, None)
            for c in statement.selected_columns
        ]
        converts = any(p is not None for p in from_db)

        def to_row(record: asyncpg.Record) -> Row:
            if not converts:
                return dict(zip(names, record, strict=True))
            return {
                name: value if process is None else process(value)
                for name, process, value in zip(names, from_db, record, strict=True)
            }

        async def read(key: object) -> Row | None:
            arg = key if to_db is None else to_db(key)
            record = await self._fetchrow(sql, (arg,) * repeats)
            return None if record is None else to_row(record)

        return read

    @property
    def pool(self) -> asyncpg.Pool | None:
        """The asyncpg pool once the first read opened it (for inspection)."""
        return self._pool

    @property
    def traced_url(self) -> URL | None:
        return self._url

    def trace(self, spans: StatementTrace) -> None:
        self._spans = spans

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), _CLOSE_TIMEOUT_SECONDS)
        except TimeoutError:
            pool.terminate()

    async def _fetchrow(self, sql: str, args: tuple[object, ...]) -> asyncpg.Record | None:
        pool = self._pool or await self._open()
        try:
            try:
                return await self._fetchrow_on(pool, sql, args)
            except CONNECTION_LOST:
                # A connection the server or the network dropped: the pool's
                # other connections are suspect too (a server restart ends
                # them all), so expire them and retry once on a fresh one: a
                # read is safe to repeat. This replaces a pre-ping, which
                # cost a round trip per read.
                await pool.expire_connections()
                return await self._fetchrow_on(pool, sql, args)
        except DRIVER_ERRORS as exc:
            raise as_operational_error(sql, exc) from exc

    async def _fetchrow_on(
        self, pool: asyncpg.Pool, sql: str, args: tuple[object, ...]
    ) -> asyncpg.Record | None:
        # Waiting for a free connection is bounded like the engine's pool
        # (TimeoutError, an OSError: 503 in the services). The bound covers
        # the acquire only, not `acquire(timeout=...)`: asyncpg applies that
        # one to the release as well, one more timer per read (P14).
        async with asyncio.timeout(_ACQUIRE_TIMEOUT_SECONDS):
            conn = await pool.acquire()
        try:
            # Timed from here: a span's duration is the statement's, not the
            # wait for a connection or for the event loop.
            spans = self._spans
            started = None if spans is None else spans.start()
            try:
                record = await conn.fetchrow(sql, *args)
            except Exception as exc:
                if spans is not None and started is not None:
                    spans.end(started, sql, exc)  # the placeholders, never the key
                if isinstance(exc, TimeoutError | asyncpg.exceptions.InternalClientError):
                    # The server stopped answering (command_timeout): asyncpg
                    # would now send a cancel request over a new connection
                    # and wait for it when the connection goes back to the
                    # pool; a server that does not answer answers neither.
                    # Or the connection's protocol state is broken. Drop it.
                    conn.terminate()
                raise
            if spans is not None and started is not None:
                spans.end(started, sql)
            return record
        finally:
            await pool.release(conn)

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    min_size=0,
                    max_size=READ_POOL_SIZE,
                    # Only single SELECTs run here, in autocommit: no session
                    # state, lock, listener or transaction is ever left on a
                    # connection, so asyncpg's reset at each release (RESET
                    # ALL, UNLISTEN *, ...: a round trip and a third of a
                    # read's CPU) would reset nothing.
                    reset=_nothing_to_reset,
                    # Idle connections stay open (at most READ_POOL_SIZE): the
                    # idle timer asyncpg re-arms at every release cost a timer
                    # per read (P14). One the server or a proxy closed while
                    # idle is replaced at its next use (the retry above).
                    max_inactive_connection_lifetime=0,
                    **self._connect,
                )
            return self._pool


async def _nothing_to_reset(_connection: asyncpg.Connection) -> None:
    return None
