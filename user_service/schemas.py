"""Bodies of the user service's API."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field

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


class ProfilePage(BaseModel):
    items: list[ProfileOut]
    total: int
    limit: int
    offset: int
