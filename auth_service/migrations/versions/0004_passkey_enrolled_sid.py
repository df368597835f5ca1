"""webauthn_credentials.enrolled_sid: the session that enrolled each passkey.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

Shown in the passkeys and sessions views, so an owner who finds a passkey
they did not add can end the session that added it (docs/PASSKEYS.md, "The
first passkey"). Nullable: passkeys enrolled before this revision keep NULL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Expand only: a nullable column older code neither reads nor needs to write
# (docs/OPERATIONS.md, "Migrations and rollbacks").
backward_compatible: bool = True


def upgrade() -> None:
    with op.batch_alter_table("webauthn_credentials") as batch:
        batch.add_column(sa.Column("enrolled_sid", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webauthn_credentials") as batch:
        batch.drop_column("enrolled_sid")
