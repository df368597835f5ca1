"""identities: accounts and their password hashes (the schema before migrations existed).

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Databases created by `create_all` before this revision hold exactly this
table; `upgrade` adopts them (stamps 0001) instead of failing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# The first schema: there is no older code to keep running.
backward_compatible: bool = False


def upgrade() -> None:
    op.create_table(
        "identities",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_key", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("roles", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # Unique on the case-folded email: "John@x" and "john@X" are one account.
    op.create_index("ix_identities_email_key", "identities", ["email_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_identities_email_key", table_name="identities")
    op.drop_table("identities")
