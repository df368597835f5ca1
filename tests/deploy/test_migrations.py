"""Alembic migrations of both services, on SQLite and on the real PostgreSQL.

The drift test is the guard: a model changed without a migration makes the
migrated schema differ from the models, and the suite fails saying what
`revision --autogenerate` would write.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from auth_service.migrate import MIGRATIONS as AUTH
from shared.database import make_engine
from shared.migrations import (
    SchemaNotAtHead,
    ServiceMigrations,
    check_at_head,
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
        assert tables == owned | {migrations.version_table}
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
            assert await conn.run_sync(_tables) == {migrations.version_table}
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
    """The entry point deployments call (compose one-shot, Kubernetes init container)."""
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
