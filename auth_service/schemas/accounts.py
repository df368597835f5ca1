"""Request and response bodies of the auth service's public API.

Every request model forbids unknown fields and bounds every string: a typo'd
field is an error, not silently ignored, and no field can carry megabytes.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, SecretStr

from auth_service.schemas.webauthn import PasskeyAdded
from shared.http.fields import DateOfBirth, JobTitle, PersonName

Password = Annotated[SecretStr, Field(min_length=1, max_length=1024)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegistrationRequest(_Request):
    name: PersonName
    email: Annotated[EmailStr, Field(max_length=254)]
    date_of_birth: DateOfBirth
    job_title: JobTitle
    password: Password

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "John Doe",
                    "email": "john@example.com",
                    "date_of_birth": "1980-04-14",
                    "job_title": "Engineer",
                    "password": "plum-orbit-42-velvet",
                }
            ]
        },
    )


class Profile(BaseModel):
    id: uuid.UUID
    name: str
    email: str
    date_of_birth: date
    job_title: str
    created_at: datetime


class LoginRequest(_Request):
    # Not EmailStr: a malformed email must get the same 401 as an unknown one.
    email: Annotated[str, Field(min_length=1, max_length=320)]
    password: Password


class RefreshRequest(_Request):
    refresh_token: Annotated[str, Field(min_length=1, max_length=512)]
    # The client the token was issued to (RFC 6749 §6); absent: `idp-web`.
    client_id: Annotated[str | None, Field(min_length=1, max_length=128)] = None


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - RFC 6749 token type
    expires_in: int
    refresh_token: str
    scope: str
    user_id: uuid.UUID


class SessionOut(BaseModel):
    sid: str
    current: bool
    created_at: datetime
    last_used_at: datetime
    ip: str
    user_agent: str
    amr: list[str]
    # Passkeys this session enrolled: a session that added a passkey its
    # owner does not know is the one to end.
    passkeys_added: list[PasskeyAdded] = []
