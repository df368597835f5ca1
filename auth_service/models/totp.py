"""The TOTP second factor (RFC 6238): one authenticator app per account."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, ForeignKey, Uuid
from sqlmodel import Field, SQLModel

from auth_service.models.identity import utcnow


class TotpSecret(SQLModel, table=True):
    """An account's TOTP secret, encrypted, with the last time step it accepted.

    One row per account (the user id is the key): a second authenticator app
    would be a second shared secret to leak, and passkeys cover "more than one
    device". `confirmed_at` None: enrolment started, not a second factor yet.
    """

    __tablename__ = "totp_secrets"

    # Deleting the identity deletes its TOTP secret (ON DELETE CASCADE), like
    # its passkeys: a secret without an account must never authenticate anyone.
    user_id: uuid.UUID = Field(
        sa_column=Column(Uuid(), ForeignKey("identities.id", ondelete="CASCADE"), primary_key=True)
    )
    # AES-256-GCM of the base32 secret, bound to the user id (keys/secret_box.py);
    # never the secret itself.
    secret_sealed: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow)
    confirmed_at: datetime | None = None
    # The RFC 6238 time step (T) of the last code accepted. A code is accepted
    # only for a later step, by a conditional UPDATE: each code works once
    # (RFC 6238 §5.2), even when two logins race with it.
    last_used_step: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
