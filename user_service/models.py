"""Tables of the user service's own schema."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shared.audit.store import AUDIT_TABLE


def utcnow() -> datetime:
    return datetime.now(UTC)


class Profile(SQLModel, table=True):
    __tablename__ = "profiles"

    # The id is the auth service's identity id: one identity, one profile.
    id: uuid.UUID = Field(primary_key=True)
    name: str = Field(max_length=200)
    email: str = Field(max_length=320)
    date_of_birth: date
    job_title: str = Field(max_length=200)
    # Written by the auth service, which owns the fact (identities.email_verified).
    email_verified: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)


USER_TABLES = [
    Profile.__table__,  # type: ignore[attr-defined]
    AUDIT_TABLE,  # shared.audit.store: this service's audit trail
]
