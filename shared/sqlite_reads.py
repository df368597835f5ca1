"""Primary-key reads from a SQLite file without the async ORM's thread hops.

Why: on the embedded SQLite store, `AsyncSession.get` costs about 1 ms per
read (pool checkout, begin, execute, fetch and rollback, each one a hop to
aiosqlite's worker thread and back, plus ORM loading), and more under load,
when every hop also waits for the GIL. That made the authenticated
`GET /users/{id}` four times slower than everything else on its path
together, and weighs on every refresh rotation (bench/README.md, targets 1
and 5). Used by the user service's profile reads and the auth service's
identity-by-id read. The lookup itself is a B-tree
probe of about 10 µs, cheaper than a single thread hop, so it runs inline on
the event loop on a read-only connection of its own.

Safe because:
- WAL mode (shared.database) means readers never wait for the writer, and the
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

import sqlite3
import urllib.parse
from collections.abc import Callable
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["SQLitePrimaryKeyReader"]


class SQLitePrimaryKeyReader:
    """Reads one row of `table` by its single-column primary key, synchronously."""

    def __init__(self, path: str, engine: AsyncEngine, table: Table) -> None:
        dialect = engine.dialect
        quote = dialect.identifier_preparer.quote
        (pk,) = table.primary_key.columns
        self._columns = [c.name for c in table.columns]
        self._sql = (
            # Identifiers come from the table metadata, quoted; the key is a bound parameter.
            f"SELECT {', '.join(quote(n) for n in self._columns)} "  # noqa: S608
            f"FROM {quote(table.name)} WHERE {quote(pk.name)} = ?"
        )
        # The dialect's own processors: exactly what an ORM load would apply.
        self._bind = pk.type.dialect_impl(dialect).bind_processor(dialect)
        processors: list[Callable[[Any], Any] | None] = [
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in table.columns
        ]
        self._processors = processors
        self._uri = f"file:{urllib.parse.quote(path)}?mode=ro"
        self._conn: sqlite3.Connection | None = None
        # Close with the engine: the service's lifespan disposes of it at shutdown.
        event.listen(engine.sync_engine, "engine_disposed", lambda _engine: self.close())

    @classmethod
    def for_engine(cls, engine: AsyncEngine, table: Table) -> SQLitePrimaryKeyReader | None:
        """A reader for a file-backed SQLite engine, else None (use the async path)."""
        url = engine.url
        path = url.database
        if url.get_backend_name() != "sqlite" or not path or path == ":memory:" or url.query:
            return None
        return cls(path, engine, table)

    def get(self, key: object) -> dict[str, Any] | None:
        """The row as {column: value}, or None when absent.

        Raises:
            sqlite3.Error: locked, missing table, wrong thread...; the caller
                falls back to the async path.
        """
        conn = self._conn
        if conn is None:
            # Opened lazily, on the event loop thread that will use it
            # (check_same_thread stays on), once migrations made the table.
            conn = sqlite3.connect(self._uri, uri=True, isolation_level=None, timeout=0)
            self._conn = conn
        param = self._bind(key) if self._bind is not None else key
        row = conn.execute(self._sql, (param,)).fetchone()
        if row is None:
            return None
        return {
            name: proc(value) if proc is not None else value
            for name, proc, value in zip(self._columns, self._processors, row, strict=True)
        }

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
