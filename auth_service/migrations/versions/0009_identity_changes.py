"""identities: notify listeners when an account's status or roles change.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

On PostgreSQL, a trigger sends the identity's id on the channel
`idp_identity_changes` (`pg_notify`, delivered when the change commits)
after every UPDATE that names `status` or `roles` and after every DELETE:
the auth service drops what it remembers of that account
(auth_service/repositories/active_roles.py). A trigger rather than a
notification from the code that writes: an operator's own SQL, the admin
CLI and every replica are heard alike. SQLite: nothing (the service reads
the account at every refresh there).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Expand only: older code does not listen, and a notification nobody
# listens to costs nothing.
backward_compatible: bool = True

# The same name as auth_service.repositories.active_roles.CHANNEL (a test
# holds them together); a migration never imports the code it serves.
_CHANNEL = "idp_identity_changes"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION idp_identity_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{_CHANNEL}', OLD.id::text);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER identities_changed
        AFTER UPDATE OF status, roles OR DELETE ON identities
        FOR EACH ROW EXECUTE FUNCTION idp_identity_changed()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS identities_changed ON identities")
    op.execute("DROP FUNCTION IF EXISTS idp_identity_changed()")
