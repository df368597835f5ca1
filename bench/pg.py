"""The run's own PostgreSQL databases on the machine's server (the production configuration).

Each run creates one database per role (`auth`, `user`, one per baseline) named
`<prefix>_<role>`, where the prefix carries a random run id, so two runs on one
server never share a database. A name is dropped before it is created (a run
always starts from empty databases) and every database the run made is dropped
at its end, connections or not (`WITH (FORCE)`).

The admin connection is `BENCH_PG_DSN` (default: the machine's server, trust
auth, user postgres). Nothing here is timed: these are set-up and checks only.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

__all__ = ["DEFAULT_ADMIN_DSN", "PgDatabases", "database_dsn"]

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
# Database names are interpolated into DDL (identifiers cannot be bound
# parameters), so only this shape is ever accepted.
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def database_dsn(admin_dsn: str, name: str, *, driver: str | None = None) -> str:
    """The admin DSN pointed at database `name`, optionally as SQLAlchemy's
    `postgresql+<driver>` URL (the services take `postgresql+asyncpg://`)."""
    if not _NAME.match(name):
        raise ValueError(f"not a bench database name: {name!r}")
    parts = urlsplit(admin_dsn)
    if parts.scheme not in ("postgres", "postgresql") and not parts.scheme.startswith(
        "postgresql+"
    ):
        raise ValueError("expected a postgresql:// DSN")
    scheme = f"postgresql+{driver}" if driver else "postgresql"
    return urlunsplit((scheme, parts.netloc, f"/{name}", parts.query, ""))


@dataclass
class PgDatabases:
    """The databases of one run: created on demand, all dropped by `drop_all`."""

    admin_dsn: str = DEFAULT_ADMIN_DSN
    prefix: str = field(default_factory=lambda: f"idp_bench_{uuid.uuid4().hex[:8]}")
    created: list[str] = field(default_factory=list)

    def name(self, role: str) -> str:
        name = f"{self.prefix}_{role}".lower().replace("-", "_")
        if not _NAME.match(name):
            raise ValueError(f"not a bench database name: {name!r}")
        return name

    def create(self, role: str) -> str:
        """Drop and create `role`'s database; return its plain `postgresql://` DSN."""
        name = self.name(role)
        asyncio.run(
            self._admin(
                f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'
            )
        )
        if name not in self.created:
            self.created.append(name)
        return database_dsn(self.admin_dsn, name)

    def url(self, role: str, *, driver: str = "asyncpg") -> str:
        """`role`'s database as a SQLAlchemy URL (created by `create` first)."""
        return database_dsn(self.admin_dsn, self.name(role), driver=driver)

    def fetchval(self, role: str, sql: str, *args: Any) -> Any:
        async def query() -> Any:
            conn = await asyncpg.connect(database_dsn(self.admin_dsn, self.name(role)))
            try:
                return await conn.fetchval(sql, *args)
            finally:
                await conn.close()

        return asyncio.run(query())

    def server_version(self) -> str:
        async def query() -> str:
            conn = await asyncpg.connect(self.admin_dsn)
            try:
                return str(await conn.fetchval("SHOW server_version")).split()[0]
            finally:
                await conn.close()

        return asyncio.run(query())

    def existing(self) -> list[str]:
        """The server's databases under this run's prefix (what cleanup must leave: none)."""

        async def query() -> list[str]:
            conn = await asyncpg.connect(self.admin_dsn)
            try:
                rows = await conn.fetch(
                    "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
                    self.prefix + "_",
                )
                return sorted(r["datname"] for r in rows)
            finally:
                await conn.close()

        return asyncio.run(query())

    def drop_all(self) -> None:
        """Drop every database this run created, even with services still connected."""
        names, self.created = self.created, []
        if names:
            asyncio.run(
                self._admin(*(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in names))
            )

    async def _admin(self, *statements: str) -> None:
        # CREATE/DROP DATABASE cannot run in a transaction block: one
        # statement per execute, autocommit (asyncpg's default outside
        # `conn.transaction()`).
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()
