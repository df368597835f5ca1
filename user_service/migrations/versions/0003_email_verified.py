"""profiles.email_verified: the auth service's verification state, for readers.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

The auth service owns the fact (identities.email_verified) and writes it here
through /internal/profiles; GET /users/me shows it. Existing profiles start
false, as their identities do.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Expand only: a column with a server default, which older code neither
# reads nor needs to write (docs/OPERATIONS.md, "Migrations and rollbacks").
backward_compatible: bool = True


def upgrade() -> None:
    # A database adopted from `create_all` (migrations' baseline) may hold
    # the column already: the models made it. (`--sql` has no database to ask.)
    if not context.is_offline_mode():
        columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("profiles")}
        if "email_verified" in columns:
            return
    # A plain ALTER TABLE ADD COLUMN, also on SQLite (a constant default needs
    # no table copy), so `--sql` can print it without a database.
    op.add_column(
        "profiles",
        sa.Column("email_verified", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("email_verified")
