"""Bodies of the user service's API."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from shared.audit.api import AuditEventOut
from shared.http.fields import DateOfBirth, JobTitle, PersonName


class ProfileOut(BaseModel):
    id: uuid.UUID
    name: str
    email: str
    date_of_birth: date
    job_title: str
    created_at: datetime
    email_verified: bool = False


class ProfileUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID
    name: PersonName
    email: Annotated[EmailStr, Field(max_length=254)]
    date_of_birth: DateOfBirth
    job_title: JobTitle
    created_at: datetime
    # The auth service's verification state (false at registration).
    email_verified: bool = False


class ProfileEmailUpdate(BaseModel):
    """What the auth service changes after a verification or an email change."""

    model_config = ConfigDict(extra="forbid")

    email: Annotated[EmailStr, Field(max_length=254)] | None = None
    email_verified: bool | None = None


class ProfileUpdate(BaseModel):
    """`PATCH /users/me`: the fields a user may change about themselves.

    Exactly these three, validated as at registration. Anything else (email,
    id, roles, created_at, a typo) is a 422, never silently ignored: the
    email changes only through its own verified flow, roles only by an
    operator, and a client that believes it changed something must hear that
    it did not.
    """

    model_config = ConfigDict(extra="forbid")

    name: PersonName | None = None
    date_of_birth: DateOfBirth | None = None
    job_title: JobTitle | None = None

    @field_validator("name", "date_of_birth", "job_title", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Leaving a field out keeps it; sending null would erase a value the
        # profile must have, so it is refused rather than read as "keep".
        if value is None:
            raise ValueError("must not be null; leave the field out to keep it")
        return value

    def changes(self) -> dict[str, object]:
        """The fields the client sent, with their validated values."""
        return {name: getattr(self, name) for name in sorted(self.model_fields_set)}


class ProfilePage(BaseModel):
    items: list[ProfileOut]
    total: int
    limit: int
    offset: int


class ProfileExport(BaseModel):
    """Everything the user service holds about one user (`GET /internal/exports/{id}`)."""

    profile: ProfileOut | None
    audit_events: list[AuditEventOut]
    # More events exist than the export carries (shared.audit.store.SUBJECT_EXPORT_LIMIT).
    audit_events_truncated: bool
