"""Schema migrations of the user service: its scripts (`migrations/`), tables and version table.

`python -m user_service.migrate --help` lists the commands (docs/OPERATIONS.md,
"Schema migrations"); they read the service's own environment, like the service.
"""

from __future__ import annotations

from pathlib import Path

from shared.db.migrations import ServiceMigrations
from user_service.models import USER_TABLES

MIGRATIONS = ServiceMigrations(
    service="user",
    script_location=Path(__file__).resolve().parent / "migrations",
    version_table="alembic_version_user",
    tables=lambda: USER_TABLES,
    baseline_revision="0001",
    baseline_tables=("profiles",),
)

if __name__ == "__main__":
    from shared.service.migrate_cli import run
    from user_service.config import UserSettings

    run(MIGRATIONS, UserSettings)
