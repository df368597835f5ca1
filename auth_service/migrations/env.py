"""Alembic environment of the auth service; the logic is shared (shared/migrations.py)."""

from auth_service.migrate import MIGRATIONS
from shared.migrations import run_env

run_env(MIGRATIONS)
