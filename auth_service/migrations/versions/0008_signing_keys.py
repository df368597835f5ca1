"""signing_keys: the signing keys when KEY_STORE=database, private keys sealed.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

Read and written only with KEY_STORE=database (auth_service/keys/database.py;
docs/OPERATIONS.md, "Where the keys live"). The private key column holds
AES-256-GCM ciphertext under KEY_ENCRYPTION_KEY, never a PEM.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Expand only: a new table older code never reads. Rolling back below it
# after switching to KEY_STORE=database needs the keys exported first.
backward_compatible: bool = True


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=64), primary_key=True),
        sa.Column("private_key_sealed", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activates_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dev", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("signing_keys")
