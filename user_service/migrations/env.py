"""Alembic environment of the user service; the logic is shared (shared/db/migrations.py)."""

from shared.db.migrations import run_env
from user_service.migrate import MIGRATIONS

run_env(MIGRATIONS)
