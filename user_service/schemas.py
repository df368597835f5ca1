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


class ProfileUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID
    name: PersonName
    email: Annotated[EmailStr, Field(max_length=254)]
    date_of_birth: DateOfBirth
    job_title: JobTitle
    created_at: datetime


class ProfilePage(BaseModel):
    items: list[ProfileOut]
    total: int
    limit: int
    offset: int
