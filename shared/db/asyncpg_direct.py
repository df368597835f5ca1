"""What the bare asyncpg paths share: when to take them, how to connect, which errors.

Two hot paths run on asyncpg connections of their own instead of through the
SQLAlchemy engine: single-row reads (`shared.db.reads.PoolReads`) and the
audit writer's appends (`shared.db.appends.PgAppends`). Both compile their SQL
once with the engine's dialect and apply SQLAlchemy's type conversions
themselves, so the values are the engine's; this module holds the rest.
"""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "CONNECTION_LOST",
    "DRIVER_ERRORS",
    "as_operational_error",
    "connect_params",
    "direct_connections_fit",
]

# What a connection the server or the network dropped raises on its next use.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08, ConnectionDoesNotExistError included
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    ConnectionError,
    # The client's protocol state after the server ended the connection
    # under it ("cannot switch to state ..."): that connection is dropped.
    asyncpg.exceptions.InternalClientError,
)

# Everything the driver raises for a failed statement or connection.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


def direct_connections_fit(engine: AsyncEngine) -> bool:
    """Whether connections of our own beside `engine` are right for its database.

    PostgreSQL through asyncpg, not behind a transaction pooler: there a
    statement outside a transaction may be prepared on one server connection
    and executed on another (tests/api/test_pgbouncer.py); the engine's URL
    names a statement cache of 0 exactly then (shared.db.engine.postgres_target).
    Not SQLite: a second connection to an in-memory database is another database.
    """
    return (
        engine.dialect.name == "postgresql"
        and engine.dialect.driver == "asyncpg"
        and engine.url.query.get("prepared_statement_cache_size") != "0"
    )


def connect_params(engine: AsyncEngine, *, statement_timeout_ms: int) -> dict[str, Any]:
    """`asyncpg.connect` arguments for the engine's database, with its timeouts.

    The engine's URL as its dialect translates it (TLS options included).
    """
    _args, params = engine.dialect.create_connect_args(engine.url)
    return {
        **params,
        "timeout": 5,
        "server_settings": {"statement_timeout": str(statement_timeout_ms)},
        # The server's statement timeout does nothing when the server (or
        # the network to it) stops answering: asyncpg's own deadline, a
        # second later so a live server's clearer error wins.
        "command_timeout": statement_timeout_ms / 1000 + 1,
    }


def as_operational_error(sql: str, exc: BaseException) -> OperationalError:
    """The driver's error as SQLAlchemy's (the services answer 503 to it:
    shared/http/unavailable.py). No parameters: they may be personal data."""
    return OperationalError(sql, None, exc)
