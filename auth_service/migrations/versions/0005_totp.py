"""totp_secrets: the TOTP second factor (RFC 6238), one per account.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

The secret is stored sealed (AES-256-GCM, docs/ASVS.md), with the last time
step accepted, so a code works once. ON DELETE CASCADE from `identities`, like
the passkeys.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# A new table only: older code never touches it (it just does not know that
# an account has TOTP, and asks no second factor of a TOTP-only account:
# roll back only before anyone enrolled, docs/OPERATIONS.md).
backward_compatible: bool = True


def upgrade() -> None:
    op.create_table(
        "totp_secrets",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("secret_sealed", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_step", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["identities.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id"),
    )


def downgrade() -> None:
    op.drop_table("totp_secrets")
