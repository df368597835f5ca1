"""profiles: one per identity (the schema before migrations existed).

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
        "profiles",
        # The auth service's identity id: no default, the caller supplies it.
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=False),
        sa.Column("job_title", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # GET /users pages by creation time.
    op.create_index("ix_profiles_created_at", "profiles", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_profiles_created_at", table_name="profiles")
    op.drop_table("profiles")
