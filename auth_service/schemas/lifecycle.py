"""Request and response bodies of the account-lifecycle routes (api/passwords.py,
api/email.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from auth_service.schemas.accounts import Password

# secrets.token_urlsafe(32) is 43 characters; the bound leaves room and the
# pattern keeps anything else (and any log-injection attempt) out early.
OneTimeToken = Annotated[str, Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PasswordChangeRequest(_Request):
    current_password: Password
    new_password: Password


class PasswordForgotRequest(_Request):
    # Not EmailStr: a malformed email gets the same 202 as an unknown one.
    email: Annotated[str, Field(min_length=1, max_length=320)]


class PasswordResetRequest(_Request):
    token: OneTimeToken
    new_password: Password


class EmailVerifyRequest(_Request):
    token: OneTimeToken


class EmailChangeRequest(_Request):
    # Validated as registration validates an email (the same bound too).
    new_email: Annotated[EmailStr, Field(max_length=254)]
    password: Password


class Accepted(BaseModel):
    detail: str
