"""Tables of the auth service's own schema."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Identity(SQLModel, table=True):
    """An account: who can log in and with which secrets. Profiles live in the user service."""

    __tablename__ = "identities"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email: str = Field(max_length=320)
    # Case-folded, NFKC-normalised email: the uniqueness key, so "John@x" and
    # "john@X" can never be two accounts (docs/ARCHITECTURE.md: 409 case-insensitive).
    email_key: str = Field(max_length=320, unique=True, index=True)
    password_hash: str = Field(max_length=255)
    roles: str = Field(default="", max_length=255)
    # "pending" until the user service holds the profile; a pending identity
    # cannot log in, so a registration that failed halfway leaves nothing usable.
    status: str = Field(default="pending", max_length=16)
    # True once the holder of `email` used a mailed verification token
    # (POST /email/verify); an email change sets it again for the new address.
    email_verified: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def role_list(self) -> tuple[str, ...]:
        return parse_roles(self.roles)


def parse_roles(roles: str) -> tuple[str, ...]:
    """The `roles` column ("admin,support") as a tuple; empty names dropped."""
    return tuple(r for r in roles.split(",") if r)
