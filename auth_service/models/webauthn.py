"""Tables for the second factor: WebAuthn credentials (passkeys) and recovery codes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Column, ForeignKey, LargeBinary, Uuid
from sqlmodel import Field, SQLModel

from auth_service.models.identity import utcnow

# L3 §7.1 step 24 (credentialId length): at most 1023 bytes, i.e. 1364
# base64url characters; the column holds exactly that much, no more.
MAX_CREDENTIAL_ID_BYTES = 1023
_MAX_CREDENTIAL_ID_B64 = 1364


def _owner_column() -> Column[uuid.UUID]:
    # Deleting an identity deletes its passkeys and codes with it: a
    # credential without an account must never authenticate anyone.
    return Column(
        Uuid(), ForeignKey("identities.id", ondelete="CASCADE"), nullable=False, index=True
    )


class WebAuthnCredential(SQLModel, table=True):
    """A public-key credential registered by one user (L3 §4, "Credential Record").

    Holds what L3 §7.1 step 27 says to store: the credential id, the
    credential public key (COSE), the signature counter, transports, the
    backup flags, plus the AAGUID and a user-chosen label for the list page.
    """

    __tablename__ = "webauthn_credentials"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # base64url, unique across all users: L3 §7.1 step 26 says to refuse a
    # credential id that is registered already, and the unique index makes
    # that check atomic.
    credential_id: str = Field(max_length=_MAX_CREDENTIAL_ID_B64, unique=True, index=True)
    user_id: uuid.UUID = Field(sa_column=_owner_column())
    public_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # The signature counter is an unsigned 32-bit value (L3 §6.1.1): it does
    # not fit a signed 32-bit INTEGER on PostgreSQL.
    sign_count: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    transports: str = Field(default="", max_length=128)
    aaguid: str = Field(default="", max_length=36)
    backup_eligible: bool = False
    backed_up: bool = False
    label: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    # The session (`sid`) that enrolled it: the passkeys and sessions views
    # show it, so an owner who finds a passkey they did not add can end the
    # session that added it. None for passkeys enrolled before it was kept.
    enrolled_sid: str | None = Field(default=None, max_length=64)

    @property
    def transport_list(self) -> list[str]:
        return [t for t in self.transports.split(",") if t]


class RecoveryCode(SQLModel, table=True):
    """One single-use recovery code, stored only as a keyed hash."""

    __tablename__ = "recovery_codes"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(sa_column=_owner_column())
    code_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    used_at: datetime | None = None


@dataclass(frozen=True)
class NewCredential:
    """What a verified registration yields, ready to store (L3 §7.1 step 27)."""

    credential_id: str
    public_key: bytes
    sign_count: int
    transports: tuple[str, ...]
    aaguid: str
    backup_eligible: bool
    backed_up: bool
