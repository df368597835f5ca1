"""Schema migrations of the auth service: its scripts (`migrations/`), tables and version table.

`python -m auth_service.migrate --help` lists the commands (docs/OPERATIONS.md,
"Schema migrations"); they read the service's own environment, like the service.
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
