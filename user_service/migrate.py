"""Schema migrations of the user service (Alembic, version table `alembic_version_user`).

    python -m user_service.migrate upgrade          # to head; what deployments run
    python -m user_service.migrate check            # exit 1 unless at head
    python -m user_service.migrate current | history
    python -m user_service.migrate upgrade --sql    # the SQL, for review
    python -m user_service.migrate revision -m "add x" --autogenerate   # developers

Reads the service's own environment (DATABASE_URL, ...), like the service.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Table

from shared.db.migrations import ServiceMigrations, main


def _tables() -> Sequence[Table]:
    # USER_TABLES is the one list of the tables this service owns.
    from user_service.models import USER_TABLES

    return USER_TABLES


MIGRATIONS = ServiceMigrations(
    service="user",
    script_location=Path(__file__).resolve().parent / "migrations",
    version_table="alembic_version_user",
    tables=_tables,
    baseline_revision="0001",
    baseline_tables=("profiles",),
)


def _database_url() -> str:
    from user_service.config import UserSettings

    return UserSettings().database_url


if __name__ == "__main__":
    sys.exit(main(MIGRATIONS, _database_url, sys.argv[1:]))
