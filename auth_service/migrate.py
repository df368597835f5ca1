"""Schema migrations of the auth service (Alembic, version table `alembic_version_auth`).

    python -m auth_service.migrate upgrade          # to head; what deployments run
    python -m auth_service.migrate check            # exit 1 unless at head
    python -m auth_service.migrate current | history
    python -m auth_service.migrate upgrade --sql    # the SQL, for review
    python -m auth_service.migrate revision -m "add x" --autogenerate   # developers

Reads the service's own environment (DATABASE_URL, ...), like the service.
"""

from __future__ import annotations

from pathlib import Path

from auth_service.models import AUTH_TABLES
from shared.db.migrations import ServiceMigrations

MIGRATIONS = ServiceMigrations(
    service="auth",
    script_location=Path(__file__).resolve().parent / "migrations",
    version_table="alembic_version_auth",
    tables=lambda: AUTH_TABLES,
    baseline_revision="0001",
    baseline_tables=("identities",),
)

if __name__ == "__main__":
    from auth_service.config import AuthSettings
    from shared.service.migrate_cli import run

    run(MIGRATIONS, AuthSettings)
