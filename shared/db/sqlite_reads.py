"""Key lookups in a SQLite file without the async ORM's thread hops.

Why: on the embedded SQLite store, `AsyncSession.get` costs about 1 ms per
read (pool checkout, begin, execute, fetch and rollback, each one a hop to
aiosqlite's worker thread and back, plus ORM loading), and more under load,
when every hop also waits for the GIL. That made the authenticated
`GET /users/{id}` four times slower than everything else on its path
together, and weighs on every refresh rotation (bench/README.md, targets 1
and 5). Used by the user service's profile reads and the auth service's
identity reads by id and by email and its passkey check at login (two ORM
reads that cost a login ~6 ms over its argon2 verify, target 3). Each lookup
is on the primary key or on an indexed column. The lookup itself is a B-tree
probe of about 10 µs, cheaper than a single thread hop, so it runs inline on
the event loop on a read-only connection of its own.

Safe because:
- WAL mode (shared.db.engine) means readers never wait for the writer, and the
  connection's busy timeout is 0: any lock or error raises at once, and the
  caller falls back to the async ORM path, so the event loop never blocks on I/O
  waits;
- autocommit: every read is its own snapshot of committed data, nothing is
  cached between reads;
- values go through the same SQLAlchemy type processors as ORM loads, so both
  paths return identical values.

PostgreSQL (production) keeps the async path: its driver is natively async.
"""

from __future__ import annotations

import contextlib
import sqlite3
import urllib.parse
from collections.abc import Callable
from typing import Any

from sqlalchemy import Column, Table, event
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["SQLitePrimaryKeyReader"]


class SQLitePrimaryKeyReader:
    """Reads rows of `table` by one key column, synchronously.

    The key is the single-column primary key unless `key` names another
    column; `get` then expects it to be unique (it returns the first row).
    """

    def __init__(
        self, path: str, engine: AsyncEngine, table: Table, key: Column[Any] | None = None
    ) -> None:
        dialect = engine.dialect
        quote = dialect.identifier_preparer.quote
        if key is None:
            (key,) = table.primary_key.columns
        elif key.table is not table:
            raise ValueError(f"{key} is not a column of {table.name}")
        self._columns = [c.name for c in table.columns]
        # Identifiers come from the table metadata, quoted; the key is a bound parameter.
        where = f"FROM {quote(table.name)} WHERE {quote(key.name)} = ?"
        self._sql = f"SELECT {', '.join(quote(n) for n in self._columns)} {where}"
        self._exists_sql = f"SELECT 1 {where} LIMIT 1"
        # The dialect's own processors: exactly what an ORM load would apply.
        self._bind = key.type.dialect_impl(dialect).bind_processor(dialect)
        processors: list[Callable[[Any], Any] | None] = [
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in table.columns
        ]
        self._processors = processors
        self._uri = f"file:{urllib.parse.quote(path)}?mode=ro"
        self._conn: sqlite3.Connection | None = None
        # Close with the engine: the service's lifespan disposes of it at shutdown.
        event.listen(engine.sync_engine, "engine_disposed", lambda _engine: self.close())

    @classmethod
    def for_engine(
        cls, engine: AsyncEngine, table: Table, key: Column[Any] | None = None
    ) -> SQLitePrimaryKeyReader | None:
        """A reader for a file-backed SQLite engine, else None (use the async path)."""
        url = engine.url
        path = url.database
        if url.get_backend_name() != "sqlite" or not path or path == ":memory:" or url.query:
            return None
        return cls(path, engine, table, key)

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            # Opened lazily, on the event loop thread that will use it
            # (check_same_thread stays on), once migrations made the table.
            conn = sqlite3.connect(self._uri, uri=True, isolation_level=None, timeout=0)
            self._conn = conn
        return conn

    def exists(self, key: object) -> bool:
        """Whether a row has this key.

        Raises:
            sqlite3.Error: as `get`.
        """
        param = self._bind(key) if self._bind is not None else key
        return self._connection().execute(self._exists_sql, (param,)).fetchone() is not None

    def get(self, key: object) -> dict[str, Any] | None:
        """The row as {column: value}, or None when absent.

        Raises:
            sqlite3.Error: locked, missing table, wrong thread...; the caller
                falls back to the async path.
        """
        param = self._bind(key) if self._bind is not None else key
        row = self._connection().execute(self._sql, (param,)).fetchone()
        if row is None:
            return None
        return {
            name: proc(value) if proc is not None else value
            for name, proc, value in zip(self._columns, self._processors, row, strict=True)
        }

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # Only its own thread may close it (check_same_thread); a
            # connection opened elsewhere is closed when it is collected.
            with contextlib.suppress(sqlite3.ProgrammingError):
                conn.close()
