"""Schema migrations of the user service (Alembic, version table `alembic_version_user`).

    python -m user_service.migrate upgrade          # to head; what deployments run
    python -m user_service.migrate check            # exit 1 unless at head
    python -m user_service.migrate current | history
    python -m user_service.migrate upgrade --sql    # the SQL, for review
    python -m user_service.migrate revision -m "add x" --autogenerate   # developers

Reads the service's own environment (DATABASE_URL, ...), like the service.
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
