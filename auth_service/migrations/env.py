"""Alembic environment of the auth service; the logic is shared (shared/db/migrations.py)."""

from auth_service.migrate import MIGRATIONS
from shared.db.migrations import run_env

run_env(MIGRATIONS)
