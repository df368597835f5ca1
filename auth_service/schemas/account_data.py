"""Bodies of `DELETE /users/me` and `GET /users/me/export` (api/account.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from auth_service.schemas.accounts import Password, SessionOut
from auth_service.schemas.webauthn import CredentialOut
from shared.audit.api import AuditEventOut


class AccountDeleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: Password


class IdentityExport(BaseModel):
    """The identity as stored, but the password hash."""

    id: uuid.UUID
    email: str
    roles: list[str]
    created_at: datetime
    updated_at: datetime


class RecoveryCodesExport(BaseModel):
    # The codes themselves exist only as keyed hashes: nobody can show them.
    remaining: int


class AuditTrailExport(BaseModel):
    auth_service: list[AuditEventOut]
    user_service: list[AuditEventOut]
    # More events exist than an export carries (the newest are kept).
    truncated: bool


class AccountExportOut(BaseModel):
    exported_at: datetime
    identity: IdentityExport
    # The user service's profile (name, email, date of birth, job title, ...).
    profile: dict[str, Any] | None
    sessions: list[SessionOut]
    passkeys: list[CredentialOut]
    recovery_codes: RecoveryCodesExport
    audit_events: AuditTrailExport
