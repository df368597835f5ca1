"""The auth service's tables (SQLModel).

AUTH_TABLES is the one list of the tables this service owns: its migrations
(auth_service/migrations/) create them, and tests/deploy/test_migrations.py
checks that the migrated schema matches these models. Add a table here *and*
a migration for it.

ACCOUNT_OWNED is the one list of the tables holding an account's rows, each
with the column that names the owner: deleting an account
(`repositories/accounts.py`) deletes from each, in this order, in one
transaction, the identity last. A table with a `user_id` column must be in
it or in ACCOUNT_RETAINED (tests/api/test_account_deletion.py fails otherwise),
so a new table (a TOTP secret, say) is one line here.
"""

from sqlalchemy import Table

from auth_service.models.client import OAuthClient
from auth_service.models.identity import Identity
from auth_service.models.signing_key import SigningKeyRow
from auth_service.models.totp import TotpSecret
from auth_service.models.webauthn import RecoveryCode, WebAuthnCredential
from shared.audit.store import AUDIT_TABLE

AUTH_TABLES = [
    Identity.__table__,  # type: ignore[attr-defined]
    WebAuthnCredential.__table__,  # type: ignore[attr-defined]
    RecoveryCode.__table__,  # type: ignore[attr-defined]
    TotpSecret.__table__,  # type: ignore[attr-defined]
    OAuthClient.__table__,  # type: ignore[attr-defined]
    SigningKeyRow.__table__,  # type: ignore[attr-defined]
    AUDIT_TABLE,  # this service's audit trail (shared.audit.store)
]

# (table, owner column): everything an account deletion erases, children first.
ACCOUNT_OWNED: list[tuple[Table, str]] = [
    (WebAuthnCredential.__table__, "user_id"),  # type: ignore[attr-defined]
    (RecoveryCode.__table__, "user_id"),  # type: ignore[attr-defined]
    (TotpSecret.__table__, "user_id"),  # type: ignore[attr-defined]
    (Identity.__table__, "id"),  # type: ignore[attr-defined]
]

# Kept when an account is deleted: the audit trail, whose rows name the
# account by its bare id only (never email or name; docs/ACCOUNTS.md).
ACCOUNT_RETAINED: list[Table] = [AUDIT_TABLE]

__all__ = [
    "ACCOUNT_OWNED",
    "ACCOUNT_RETAINED",
    "AUTH_TABLES",
    "Identity",
    "OAuthClient",
    "RecoveryCode",
    "SigningKeyRow",
    "TotpSecret",
    "WebAuthnCredential",
]
