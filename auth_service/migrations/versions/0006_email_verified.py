"""identities.email_verified: whether the account proved it reads its mail.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-07

Set by POST /email/verify (a mailed single-use token) and by a completed
email change. Existing accounts start unverified: nobody proved they read
those addresses. With REQUIRE_VERIFIED_EMAIL on, their next login is refused
and mails them a fresh link (README.md, "Email verification and email change").
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Expand only: a column with a server default, which older code neither
# reads nor needs to write (docs/OPERATIONS.md, "Migrations and rollbacks").
backward_compatible: bool = True


def upgrade() -> None:
    # A database adopted from `create_all` (migrations' baseline) may hold
    # the column already: the models made it. (`--sql` has no database to ask.)
    if not context.is_offline_mode():
        columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("identities")}
        if "email_verified" in columns:
            return
    # A plain ALTER TABLE ADD COLUMN, also on SQLite (a constant default needs
    # no table copy), so `--sql` can print it without a database.
    op.add_column(
        "identities",
        sa.Column("email_verified", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("identities") as batch:
        batch.drop_column("email_verified")
