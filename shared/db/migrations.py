"""Alembic, one environment per service: upgrade, check, and the operator CLI.

Each service keeps its migration scripts in `<service>/migrations/` and its own
version table, so two services could even share one database without
stepping on each other's history. The services never call `create_all`:

- development and test: `prepare_schema` runs `upgrade head` at start, on the
  embedded SQLite as on PostgreSQL, so every developer runs the same scripts
  that production will;
- production: `prepare_schema` only checks the schema and refuses to start
  when this code cannot run on it. Migrations run as an explicit step
  (`python -m <service>.migrate upgrade`: a compose one-shot service, a
  Kubernetes Job), never as a side effect of a replica starting.

Rollbacks (docs/OPERATIONS.md, "Migrations and rollbacks"): every migration
script declares `backward_compatible` (True: expand only, the previous
release's code still runs on the new schema). Each upgrade or downgrade
records, in `<version table>_compatible`, the revisions whose code can run on
the schema as it now is; older code that finds its own head there starts on
a schema that is "ahead" of it. It reads the record, not the newer scripts,
which it does not have.

Nothing here owns an engine: callers pass the one they built.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, MetaData, String, Table, delete, insert, inspect, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext

__all__ = [
    "SchemaNotAtHead",
    "ServiceMigrations",
    "check_at_head",
    "check_schema",
    "main",
    "model_drift",
    "prepare_schema",
    "run_env",
    "upgrade_to_head",
]

_log = logging.getLogger(__name__)


class SchemaNotAtHead(RuntimeError):
    """The database is not at the migration head this code expects."""


@dataclass(frozen=True)
class ServiceMigrations:
    """Where a service's migrations live and which tables they own.

    Attributes:
        service: the service's name, for messages (`auth`, `user`).
        script_location: the Alembic script directory (env.py, versions/).
        version_table: this service's own Alembic version table.
        tables: returns the service's SQLModel tables (called lazily, so the
            models are imported only when needed).
        baseline_revision: the first revision, whose tables databases made by
            `create_all` before migrations existed already hold.
        baseline_tables: the tables of `baseline_revision`.
    """

    service: str
    script_location: Path
    version_table: str
    tables: Callable[[], Sequence[Table]]
    baseline_revision: str
    baseline_tables: tuple[str, ...]

    def metadata(self) -> MetaData:
        """A MetaData holding copies of this service's tables only.

        Both services register their models on SQLModel's one global MetaData;
        comparing against it would make each service want the other's tables.
        """
        target = MetaData()
        for table in self.tables():
            table.to_metadata(target)
        return target

    def config(self, *, connection: Connection | None = None, url: str | None = None) -> Config:
        """An Alembic config for this service, built in code (no alembic.ini to drift)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(self.script_location))
        # Revision files sort by name: 0001_..., 0002_...
        cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
        cfg.attributes["migrations"] = self
        if connection is not None:
            cfg.attributes["connection"] = connection
        if url is not None:
            # Not set_main_option: configparser would choke on '%' in passwords.
            cfg.attributes["url"] = url
        return cfg

    def heads(self) -> tuple[str, ...]:
        return tuple(self.script().get_heads())

    def script(self) -> ScriptDirectory:
        return ScriptDirectory.from_config(self.config())

    def compatible_table(self) -> Table:
        """Revisions whose code runs on the schema as it is (see the module doc)."""
        return Table(
            f"{self.version_table}_compatible",
            MetaData(),
            Column("revision", String(32), primary_key=True),
        )


# --- env.py -----------------------------------------------------------------------


def _compare_options(migrations: ServiceMigrations, metadata: MetaData) -> dict[str, Any]:
    """How autogenerate and the drift check compare the database with the models."""
    owned = set(metadata.tables)

    def include_object(
        obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
    ) -> bool:
        # Reflected tables that are not ours (another service's, in a shared
        # database) are neither created nor dropped by our autogenerate.
        return not (type_ == "table" and name not in owned)

    return {
        "version_table": migrations.version_table,
        "include_object": include_object,
        "compare_type": True,
        "compare_server_default": True,
    }


def model_drift(connection: Connection, migrations: ServiceMigrations) -> list[Any]:
    """What autogenerate would write: the differences between the database
    and the service's models ([] when the migrations describe the models).

    Run it on a database at head: a model changed without a migration shows
    up here.
    """
    # Imported here: services starting up never need autogenerate.
    from alembic.autogenerate import compare_metadata

    metadata = migrations.metadata()
    context = MigrationContext.configure(
        connection, opts={"target_metadata": metadata, **_compare_options(migrations, metadata)}
    )
    return list(compare_metadata(context, metadata))


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Write column types of autogenerated scripts as plain SQLAlchemy types.

    SQLModel's AutoString and UTCDateTime are TypeDecorators: rendered as is,
    every migration would import sqlmodel internals and break when they move.
    What reaches the database is the decorator's `impl`, so that is what a
    migration should say (String(length=...), DateTime(timezone=True)).
    """
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


def run_env(migrations: ServiceMigrations) -> None:
    """The body of `<service>/migrations/env.py`.

    Online with a connection handed over in `config.attributes` (the services
    and the CLI), online from a URL with an async engine (plain `alembic`
    use), or offline (`--sql`: SQL scripts for a DBA to review).
    """
    from alembic import context

    cfg = context.config
    metadata = migrations.metadata()

    def configure(**kwargs: Any) -> None:
        context.configure(
            target_metadata=metadata,
            render_item=_render_item,
            **_compare_options(migrations, metadata),
            **kwargs,
        )

    def run_online(connection: Connection) -> None:
        # SQLite cannot ALTER most things: batch mode recreates the table.
        configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()

    connection = cfg.attributes.get("connection")
    url = cfg.attributes.get("url") or cfg.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        if not url:
            raise SchemaNotAtHead("offline mode needs a database URL")
        configure(
            url=url,
            literal_binds=True,
            dialect_opts={"paramstyle": "named"},
            render_as_batch=make_url(url).get_backend_name() == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    elif connection is not None:
        run_online(connection)
    else:
        if not url:
            raise SchemaNotAtHead("no connection and no sqlalchemy.url to migrate")

        async def run_async() -> None:
            from shared.db.engine import migration_engine

            engine = migration_engine(url)
            try:
                async with engine.begin() as conn:
                    await conn.run_sync(run_online)
            finally:
                await engine.dispose()

        asyncio.run(run_async())


# --- upgrade and check ---------------------------------------------------------------


def _lock(connection: Connection, migrations: ServiceMigrations) -> None:
    """Serialise concurrent upgrades of one database (replicas starting together).

    A transaction-scoped advisory lock on PostgreSQL; SQLite serialises
    writers itself.
    """
    if connection.dialect.name != "postgresql":
        return
    digest = hashlib.sha256(migrations.version_table.encode()).digest()[:8]
    key = int.from_bytes(digest, "big", signed=True)
    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({key})")


def _upgrade(connection: Connection, migrations: ServiceMigrations, revision: str) -> None:
    _lock(connection, migrations)
    cfg = migrations.config(connection=connection)
    found = inspect(connection)
    if not found.has_table(migrations.version_table) and all(
        found.has_table(name) for name in migrations.baseline_tables
    ):
        # A database made by `create_all` before migrations existed: it holds
        # exactly the baseline tables. Record that instead of failing on
        # "table already exists".
        _log.warning(
            "%s: adopting a database created without migrations at revision %s",
            migrations.service,
            migrations.baseline_revision,
        )
        command.stamp(cfg, migrations.baseline_revision)
    if revision == "head":
        current = _current(connection, migrations)
        if _unknown(migrations, current):
            # A newer release migrated this database (a rollback or a restart
            # of older code): nothing to upgrade, if this code can run on it.
            problem = _ahead_problem(connection, migrations, current)
            if problem is not None:
                raise SchemaNotAtHead(problem)
            return
    command.upgrade(cfg, revision)
    _record_compatible(connection, migrations)


def compatible_revisions(script: ScriptDirectory, current: Sequence[str]) -> set[str]:
    """The revisions whose code can run on a schema at `current`.

    Each current revision, and below it each parent as long as the migration
    above that parent declares `backward_compatible = True`. A merge point, or
    a script that declares nothing, ends the walk: unknown means incompatible.
    """
    found: set[str] = set()
    for rev in current:
        script_rev = script.get_revision(rev)
        while script_rev is not None:
            found.add(script_rev.revision)
            down = script_rev.down_revision
            if getattr(script_rev.module, "backward_compatible", False) is not True:
                break
            if not isinstance(down, str):
                break
            script_rev = script.get_revision(down)
    return found


def _record_compatible(connection: Connection, migrations: ServiceMigrations) -> None:
    table = migrations.compatible_table()
    table.create(connection, checkfirst=True)
    current = _current(connection, migrations)
    revisions = compatible_revisions(migrations.script(), current)
    connection.execute(delete(table))
    if revisions:
        connection.execute(insert(table), [{"revision": r} for r in sorted(revisions)])


def _unknown(migrations: ServiceMigrations, current: Sequence[str]) -> list[str]:
    """The database's revisions this code has no script for (a newer release's)."""
    known = {r.revision for r in migrations.script().walk_revisions()}
    return [r for r in current if r not in known]


def _ahead_problem(
    connection: Connection, migrations: ServiceMigrations, current: Sequence[str]
) -> str | None:
    """None when this code's head is recorded as compatible with the schema."""
    table = migrations.compatible_table()
    recorded: set[str] = set()
    if inspect(connection).has_table(table.name):
        recorded = set(connection.execute(select(table.c.revision)).scalars())
    heads = migrations.heads()
    if set(heads) <= recorded:
        _log.warning(
            "%s: the database is at revision %s, newer than this code's head %s; the "
            "migrations since are backward compatible, starting",
            migrations.service,
            ", ".join(current),
            ", ".join(heads),
        )
        return None
    return (
        f"the {migrations.service} database is at revision {', '.join(current)}, newer than "
        f"this code's head {', '.join(heads)}, and a migration since is not backward "
        f"compatible: run the newer release, or first revert the schema with its "
        f"`python -m {migrations.service}_service.migrate downgrade {heads[0]}`"
    )


# A SQLite transaction that read and then writes fails at once with
# "database is locked" when another connection wrote in between (its
# snapshot is stale: the busy timeout does not apply). A running service's
# audit writer does exactly that while an admin CLI upgrades the same file;
# the upgrade is idempotent, so it is simply run again.
_SQLITE_UPGRADE_ATTEMPTS = 5


async def upgrade_to_head(engine: AsyncEngine, migrations: ServiceMigrations) -> None:
    """Run `upgrade head` on the engine's database, in one transaction."""
    attempts = _SQLITE_UPGRADE_ATTEMPTS if engine.dialect.name == "sqlite" else 1
    for attempt in range(1, attempts + 1):
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade, migrations, "head")
            return
        except OperationalError as exc:
            if attempt == attempts or "database is locked" not in str(exc.orig):
                raise
            await asyncio.sleep(0.05 * attempt)


def _current(connection: Connection, migrations: ServiceMigrations) -> tuple[str, ...]:
    context = MigrationContext.configure(
        connection, opts={"version_table": migrations.version_table}
    )
    return tuple(context.get_current_heads())


def _not_at_head(migrations: ServiceMigrations, current: Sequence[str]) -> str | None:
    heads = migrations.heads()
    if set(current) == set(heads):
        return None
    have = f"is at revision {', '.join(current)}" if current else "has no migrations applied"
    return (
        f"the {migrations.service} database {have}, expected head {', '.join(heads)}; "
        f"run `python -m {migrations.service}_service.migrate upgrade`"
    )


async def check_at_head(engine: AsyncEngine, migrations: ServiceMigrations) -> str | None:
    """Say what is wrong when the database is not exactly at head, else None
    (`migrate check`; the services start on what `check_schema` accepts)."""
    async with engine.connect() as conn:
        current = await conn.run_sync(_current, migrations)
    return _not_at_head(migrations, current)


async def check_schema(engine: AsyncEngine, migrations: ServiceMigrations) -> str | None:
    """Say why this code cannot run on the database's schema, else None.

    At head, or ahead by backward-compatible migrations only (a rollback or
    a restart of the previous release): fine. Behind (this code would query
    tables that do not exist yet), or ahead by a migration that is not
    backward compatible: what is wrong and what to do.
    """

    def problem(connection: Connection) -> str | None:
        current = _current(connection, migrations)
        if _unknown(migrations, current):
            return _ahead_problem(connection, migrations, current)
        return _not_at_head(migrations, current)

    async with engine.connect() as conn:
        return await conn.run_sync(problem)


async def prepare_schema(
    engine: AsyncEngine, migrations: ServiceMigrations, *, production: bool
) -> None:
    """Bring the schema to head (development), or insist that this code can
    run on it (production: `check_schema`).

    Raises:
        SchemaNotAtHead: production and the database is not at head, or
            (either mode) it is ahead by a migration that is not backward
            compatible.
    """
    if not production:
        # Already at head (the usual start, and every CLI run beside a running
        # service): nothing to write, so nothing to contend for on SQLite.
        if await check_at_head(engine, migrations) is None:
            return
        await upgrade_to_head(engine, migrations)
        return
    problem = await check_schema(engine, migrations)
    if problem is not None:
        raise SchemaNotAtHead(problem)


# --- operator CLI ------------------------------------------------------------------


def _parser(migrations: ServiceMigrations) -> argparse.ArgumentParser:
    prog = f"python -m {migrations.service}_service.migrate"
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"Schema migrations of the {migrations.service} service "
        "(reads DATABASE_URL and the rest of the service's environment).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upgrade", help="apply migrations (default: to head)")
    up.add_argument("revision", nargs="?", default="head")
    up.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    down = sub.add_parser("downgrade", help="revert migrations to a revision (e.g. -1, base)")
    down.add_argument("revision")
    down.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    sub.add_parser("current", help="print the database's revision")
    check = sub.add_parser("check", help="exit 1 unless the database is at head")
    check.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="ask again every 2 s for this long (a pod waiting for the migration Job)",
    )
    sub.add_parser("history", help="list the revisions")
    stamp = sub.add_parser("stamp", help="record a revision without running it")
    stamp.add_argument("revision")
    rev = sub.add_parser("revision", help="new migration script (developers)")
    rev.add_argument("-m", "--message", required=True)
    rev.add_argument("--autogenerate", action="store_true", help="diff models against the DB")
    rev.add_argument("--rev-id", default=None, help="e.g. 0004; default: a random id")
    return parser


def main(
    migrations: ServiceMigrations, database_url: Callable[[], str], argv: Sequence[str] | None
) -> int:
    """Run the migration CLI for one service; returns the exit status.

    Args:
        migrations: the service's migrations.
        database_url: returns the URL to migrate (the service's settings).
        argv: arguments after the program name.
    """
    from shared.db.engine import make_engine

    args = _parser(migrations).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    url = database_url()

    if getattr(args, "sql", False):  # offline: no connection at all
        cfg = migrations.config(url=url)
        if args.command == "upgrade":
            command.upgrade(cfg, args.revision, sql=True)
        else:
            command.downgrade(cfg, args.revision, sql=True)
        return 0
    if args.command == "history":
        command.history(migrations.config(), verbose=False)
        return 0

    def run(connection: Connection) -> int:
        cfg = migrations.config(connection=connection)
        if args.command == "upgrade":
            _upgrade(connection, migrations, args.revision)
        elif args.command == "downgrade":
            _lock(connection, migrations)
            command.downgrade(cfg, args.revision)
            _record_compatible(connection, migrations)
        elif args.command == "stamp":
            command.stamp(cfg, args.revision)
            _record_compatible(connection, migrations)
        elif args.command == "revision":
            command.revision(
                cfg, message=args.message, autogenerate=args.autogenerate, rev_id=args.rev_id
            )
        elif args.command == "current":
            print(", ".join(_current(connection, migrations)) or "(no migrations applied)")
        return 0

    async def go() -> int:
        engine = make_engine(url)
        try:
            if args.command == "check":
                deadline = time.monotonic() + args.wait
                while True:
                    try:
                        problem = await check_at_head(engine, migrations)
                    except (OSError, SQLAlchemyError) as exc:
                        if not args.wait:
                            raise
                        # Waiting: a database not there yet is not at head yet.
                        problem = f"database unavailable ({type(exc).__name__})"
                    if problem is None or time.monotonic() >= deadline:
                        break
                    await asyncio.sleep(2)
                if problem is not None:
                    print(problem, file=sys.stderr)
                    return 1
                print(f"{migrations.service}: at head {', '.join(migrations.heads())}")
                return 0
            async with engine.begin() as conn:
                return await conn.run_sync(run)
        finally:
            await engine.dispose()

    return asyncio.run(go())
