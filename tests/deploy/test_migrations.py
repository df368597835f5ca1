"""Alembic migrations of both services, on SQLite and on the real PostgreSQL.

The drift test is the guard: a model changed without a migration makes the
migrated schema differ from the models, and the suite fails saying what
`revision --autogenerate` would write.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from auth_service.migrate import MIGRATIONS as AUTH
from shared.db.engine import make_engine
from shared.db.migrations import (
    SchemaNotAtHead,
    ServiceMigrations,
    check_at_head,
    check_schema,
    main,
    model_drift,
    prepare_schema,
    upgrade_to_head,
)
from user_service.migrate import MIGRATIONS as USER

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]
SERVICES = {"auth": AUTH, "user": USER}
SERVICE_PARAMS = [pytest.param(name, id=name) for name in SERVICES]


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


@pytest.mark.parametrize("service", SERVICE_PARAMS)
async def test_migrated_schema_matches_the_models(db_urls: dict[str, str], service: str) -> None:
    migrations = SERVICES[service]
    engine = make_engine(db_urls[service])
    try:
        await upgrade_to_head(engine, migrations)
        async with engine.connect() as conn:
            drift = await conn.run_sync(model_drift, migrations)
            tables = await conn.run_sync(_tables)
        assert drift == [], (
            f"the {service} models differ from its migrations; write one with "
            f"`uv run python -m {service}_service.migrate revision --autogenerate -m ...` "
            f"and review it. Differences: {drift}"
        )
        owned = {t.name for t in migrations.tables()}
        bookkeeping = {migrations.version_table, migrations.compatible_table().name}
        assert tables == owned | bookkeeping
        assert await check_at_head(engine, migrations) is None
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", SERVICE_PARAMS)
async def test_every_migration_reverts_and_reapplies(db_urls: dict[str, str], service: str) -> None:
    from alembic import command

    migrations = SERVICES[service]
    engine = make_engine(db_urls[service])

    def downgrade_to_base(connection: Connection) -> None:
        command.downgrade(migrations.config(connection=connection), "base")

    try:
        await upgrade_to_head(engine, migrations)
        async with engine.begin() as conn:
            await conn.run_sync(downgrade_to_base)
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == {
                migrations.version_table,
                migrations.compatible_table().name,
            }
        await upgrade_to_head(engine, migrations)
        async with engine.connect() as conn:
            assert await conn.run_sync(model_drift, migrations) == []
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", SERVICE_PARAMS)
def test_one_head_per_service(service: str) -> None:
    # Two heads mean two branches merged without `alembic merge`: upgrade
    # head would be ambiguous on every deployment.
    assert len(SERVICES[service].heads()) == 1


def test_services_have_their_own_version_tables() -> None:
    assert AUTH.version_table != USER.version_table
    assert not {t.name for t in AUTH.tables()} & {t.name for t in USER.tables()} - {"audit_events"}


@pytest.mark.parametrize("service", SERVICE_PARAMS)
async def test_a_database_made_by_create_all_is_adopted(tmp_path: Path, service: str) -> None:
    """Developers' .data/*.db from before migrations: stamped at the baseline, then upgraded."""
    migrations = SERVICES[service]
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/{service}.db")
    baseline = [t for t in migrations.tables() if t.name in migrations.baseline_tables]
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=baseline))
        await upgrade_to_head(engine, migrations)
        async with engine.connect() as conn:
            assert await conn.run_sync(model_drift, migrations) == []
        assert await check_at_head(engine, migrations) is None
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", SERVICE_PARAMS)
async def test_production_never_migrates_and_refuses_a_database_behind(
    tmp_path: Path, service: str
) -> None:
    migrations: ServiceMigrations = SERVICES[service]
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/{service}.db")
    try:
        with pytest.raises(SchemaNotAtHead, match=r"no migrations applied.*migrate upgrade"):
            await prepare_schema(engine, migrations, production=True)
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == set(), "production created tables"
        await prepare_schema(engine, migrations, production=False)
        await prepare_schema(engine, migrations, production=True)  # at head: fine
    finally:
        await engine.dispose()


def test_no_service_calls_create_all() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for package in ("auth_service", "user_service", "shared")
        for path in (REPO / package).rglob("*.py")
        if "create_all(" in path.read_text()
    ]
    assert offenders == []


def _cli(service: str, *args: str, url: str) -> int:
    return main(SERVICES[service], lambda: url, list(args))


@pytest.mark.parametrize("service", SERVICE_PARAMS)
def test_migrate_cli(
    db_urls: dict[str, str], service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = db_urls[service]
    assert _cli(service, "check", url=url) == 1
    assert "no migrations applied" in capsys.readouterr().err
    assert _cli(service, "upgrade", "--sql", url=url) == 0
    assert "CREATE TABLE" in capsys.readouterr().out
    assert _cli(service, "check", url=url) == 1, "--sql must not touch the database"
    assert _cli(service, "upgrade", url=url) == 0
    capsys.readouterr()
    assert _cli(service, "check", url=url) == 0
    assert "at head" in capsys.readouterr().out
    assert _cli(service, "current", url=url) == 0
    assert capsys.readouterr().out.strip() == SERVICES[service].heads()[0]


@pytest.mark.parametrize("service", SERVICE_PARAMS)
def test_python_dash_m_migrate_runs(tmp_path: Path, service: str) -> None:
    """The entry point deployments call (compose one-shot, the Kubernetes migration Job)."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/{service}.db",
        "ENV": "development",
        "PYTHONPATH": str(REPO),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", f"{service}_service.migrate", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    up = run("upgrade")
    assert up.returncode == 0, up.stderr
    check = run("check")
    assert check.returncode == 0, check.stderr


def test_check_wait_lets_a_pod_wait_for_the_migration_job(tmp_path: Path) -> None:
    """Kubernetes: the Deployment's init container waits (`check --wait`) while the Job migrates."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/user.db",
        "ENV": "development",
        "PYTHONPATH": str(REPO),
    }
    command = [sys.executable, "-m", "user_service.migrate"]
    waiting = subprocess.Popen(
        [*command, "check", "--wait", "60"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        assert waiting.poll() is None, "check --wait gave up on a database not yet migrated"
        up = subprocess.run(
            [*command, "upgrade"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
        assert up.returncode == 0, up.stderr
        out, err = waiting.communicate(timeout=30)
        assert waiting.returncode == 0, err
        assert "at head" in out
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    gave_up = subprocess.run(
        [*command, "check", "--wait", "1"],
        cwd=REPO,
        env={**env, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/other.db"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert gave_up.returncode == 1


# --- rollbacks: older code against a newer schema (docs/OPERATIONS.md) ------------

EXPAND = '''"""A newer release's migration, for the rollback tests."""

import sqlalchemy as sa
from alembic import op

revision = "9001"
down_revision = "{down}"
branch_labels = None
depends_on = None
backward_compatible = {compatible}


def upgrade() -> None:
    op.create_table("rollback_probe", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("rollback_probe")
'''


def _newer_release(
    tmp_path: Path, migrations: ServiceMigrations, *, compatible: bool
) -> ServiceMigrations:
    """This service's migrations plus one more revision, as the next release ships them."""
    import dataclasses
    import shutil

    location = tmp_path / "newer" / "migrations"
    shutil.copytree(
        migrations.script_location, location, ignore=shutil.ignore_patterns("__pycache__")
    )
    (head,) = migrations.heads()
    (location / "versions" / "9001_newer.py").write_text(
        EXPAND.format(down=head, compatible=compatible)
    )
    return dataclasses.replace(migrations, script_location=location)


@pytest.mark.parametrize("service", SERVICE_PARAMS)
async def test_older_code_runs_on_a_schema_migrated_by_a_compatible_release(
    tmp_path: Path, service: str
) -> None:
    """A rollback or restart of the previous release after an expand-only
    migration: it starts, in production and in development, and changes nothing."""
    migrations = SERVICES[service]
    newer = _newer_release(tmp_path, migrations, compatible=True)
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/{service}.db")
    try:
        await upgrade_to_head(engine, newer)
        await prepare_schema(engine, migrations, production=True)
        await prepare_schema(engine, migrations, production=False)
        assert await check_schema(engine, migrations) is None
        # `migrate check` stays strict: the database is not at this code's head.
        assert await check_at_head(engine, migrations) is not None
        async with engine.connect() as conn:
            assert "rollback_probe" in await conn.run_sync(_tables)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", SERVICE_PARAMS)
async def test_older_code_refuses_a_schema_a_release_changed_incompatibly(
    tmp_path: Path, service: str
) -> None:
    migrations = SERVICES[service]
    newer = _newer_release(tmp_path, migrations, compatible=False)
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/{service}.db")
    try:
        await upgrade_to_head(engine, newer)
        problem = await check_schema(engine, migrations)
        assert problem is not None
        assert "newer than this code" in problem
        assert "not backward compatible" in problem
        for production in (True, False):
            with pytest.raises(SchemaNotAtHead, match="not backward compatible"):
                await prepare_schema(engine, migrations, production=production)
        # The way back: the newer release's own downgrade, then the old code runs.
        url = f"sqlite+aiosqlite:///{tmp_path}/{service}.db"
        (head,) = migrations.heads()
        # (In a thread: the CLI runs its own event loop.)
        downgrade = ["downgrade", head]
        assert await asyncio.to_thread(main, newer, lambda: url, downgrade) == 0
        assert await check_schema(engine, migrations) is None
        assert await check_at_head(engine, migrations) is None
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", SERVICE_PARAMS)
def test_every_migration_says_whether_older_code_survives_it(service: str) -> None:
    """The rule is only as good as the declarations: each script states it."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(SERVICES[service].config())
    for revision in script.walk_revisions():
        declared = getattr(revision.module, "backward_compatible", None)
        assert isinstance(declared, bool), f"{revision.path}: set backward_compatible"
