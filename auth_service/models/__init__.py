"""The auth service's tables (SQLModel).

AUTH_TABLES is the one list of the tables this service owns: its migrations
(auth_service/migrations/) create them, and tests/deploy/test_migrations.py
checks that the migrated schema matches these models. Add a table here *and*
a migration for it.
"""

from auth_service.models.client import OAuthClient
from auth_service.models.identity import Identity
from auth_service.models.webauthn import RecoveryCode, WebAuthnCredential
from shared.audit.store import AUDIT_TABLE

AUTH_TABLES = [
    Identity.__table__,  # type: ignore[attr-defined]
    WebAuthnCredential.__table__,  # type: ignore[attr-defined]
    RecoveryCode.__table__,  # type: ignore[attr-defined]
    OAuthClient.__table__,  # type: ignore[attr-defined]
    AUDIT_TABLE,  # this service's audit trail (shared.audit.store)
]

__all__ = ["AUTH_TABLES", "Identity", "OAuthClient", "RecoveryCode", "WebAuthnCredential"]
