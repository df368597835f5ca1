"""Async SQL engine set-up shared by both services (SQLite WAL or PostgreSQL).

Hands out an engine and a session factory; owns neither: each service builds
its own in its lifespan and disposes of it on shutdown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

from sqlalchemy import Engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel.ext.asyncio.session import AsyncSession

__all__ = [
    "make_engine",
    "make_sessionmaker",
    "migration_engine",
    "postgres_target",
]


def make_engine(url: str, *, statement_timeout_ms: int = 5000) -> AsyncEngine:
    """Create an async engine tuned for the given backend.

    SQLite: WAL so readers never block the writer, a busy timeout so a locked
    database surfaces as an error after a bounded wait instead of hanging, and
    foreign keys on. PostgreSQL: a statement timeout for the same reason.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": statement_timeout_ms / 1000})
        _sqlite_pragmas(engine.sync_engine, statement_timeout_ms)
        return engine
    target, pooled = postgres_target(url)
    return create_async_engine(
        target,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        pool_timeout=5,
        connect_args=_postgres_connect_args(statement_timeout_ms, pooled=pooled),
    )


# Behind PgBouncer in transaction mode, consecutive transactions of one
# client connection may run on different server connections, so a named
# prepared statement made on one is unknown (or, worse, another's) on the
# next. SQLAlchemy's documented remedy for asyncpg: no statement caches
# (asyncpg's, and the dialect's via `prepared_statement_cache_size=0` in the
# URL) and a unique name per statement.
_TRANSACTION_POOL_ARGS: dict[str, Any] = {
    "statement_cache_size": 0,
    "prepared_statement_name_func": lambda: f"__asyncpg_{uuid4()}__",
}


def postgres_target(url: str) -> tuple[URL, bool]:
    """The URL to connect to, and whether a transaction-mode pooler sits in front.

    `?pool_mode=transaction` on a PostgreSQL `DATABASE_URL` says that the host
    is PgBouncer (or another transaction pooler); the parameter is ours and is
    removed before the driver sees the URL.

    Raises:
        ValueError: a `pool_mode` other than `session` or `transaction`.
    """
    parsed = make_url(url)
    mode = parsed.query.get("pool_mode", "session")
    if mode not in ("session", "transaction"):
        raise ValueError("expected pool_mode=session or pool_mode=transaction in DATABASE_URL")
    parsed = parsed.difference_update_query(["pool_mode"])
    if mode == "transaction":
        parsed = parsed.update_query_dict({"prepared_statement_cache_size": "0"})
    return parsed, mode == "transaction"


def migration_engine(url: str) -> AsyncEngine:
    """A pool-less engine for one migration run (the same pooler rules as `make_engine`)."""
    if make_url(url).get_backend_name() == "sqlite":
        return create_async_engine(url, poolclass=NullPool)
    target, pooled = postgres_target(url)
    return create_async_engine(
        target, poolclass=NullPool, connect_args=dict(_TRANSACTION_POOL_ARGS) if pooled else {}
    )


def _postgres_connect_args(statement_timeout_ms: int, *, pooled: bool) -> dict[str, Any]:
    args: dict[str, Any] = {
        "timeout": 5,
        "server_settings": {"statement_timeout": str(statement_timeout_ms)},
        # The statement timeout is enforced by the server, so it does
        # nothing when the server (or the network to it) stops answering:
        # every request then hung until TCP gave up, minutes later
        # (tests/faults: a proxy that stops forwarding). asyncpg's own
        # deadline, a second later so a live server's clearer error wins.
        "command_timeout": statement_timeout_ms / 1000 + 1,
    }
    if pooled:
        args.update(_TRANSACTION_POOL_ARGS)
        # PgBouncer refuses startup parameters it does not know: the
        # statement timeout is set on the role instead (docs/OPERATIONS.md).
        del args["server_settings"]
    return args


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def _sqlite_pragmas(engine: Engine, statement_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(statement_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()
