"""oauth_clients: the applications registered to sign in through the platform.

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-07

Made and removed by an operator (`python -m auth_service.clients`); secrets
are stored as SHA-256 hashes only (docs/ASVS.md, "OAuth clients").
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Expand only: a new table older code never reads
# (docs/OPERATIONS.md, "Migrations and rollbacks").
backward_compatible: bool = True


def upgrade() -> None:
    op.create_table(
        "oauth_clients",
        sa.Column("client_id", sa.String(length=64), primary_key=True),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=True),
        sa.Column("redirect_uris", sa.Text(), nullable=False),
        sa.Column("grant_types", sa.String(length=128), nullable=False),
        sa.Column("scopes", sa.String(length=1024), nullable=False),
        sa.Column("audience", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("oauth_clients")
