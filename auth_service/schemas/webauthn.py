"""Request and response bodies of the passkey and MFA endpoints.

`credential` is the browser's PublicKeyCredential as WebAuthn L3 `toJSON()`
serialises it (L3 §5.1.8: base64url `id`, `rawId`, `response.*`, `type`).
It stays a plain object here: py_webauthn's parsers are the one place that
reads it, and the request body limit (64 KiB) bounds its size.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from auth_service.models.webauthn import WebAuthnCredential

Credential = Annotated[dict[str, Any], Field(description="PublicKeyCredential JSON (L3 toJSON)")]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterOptionsRequest(_Request):
    # Only for the account's first passkey after a login that is not recent
    # (docs/PASSKEYS.md, "The first passkey"); ignored otherwise.
    password: Annotated[SecretStr | None, Field(min_length=1, max_length=1024)] = None


class RegisterVerifyRequest(_Request):
    credential: Credential
    label: Annotated[str | None, Field(max_length=64)] = None

    @field_validator("label")
    @classmethod
    def _clean_label(cls, v: str | None) -> str | None:
        # Shown back in lists and audit records: no control characters, no
        # line breaks, whitespace collapsed.
        if v is None:
            return None
        if _CONTROL.search(v):
            raise ValueError("must not contain control characters")
        v = " ".join(v.split())
        return v or None


class LoginVerifyRequest(_Request):
    credential: Credential


class MfaRequest(_Request):
    mfa_token: Annotated[str, Field(min_length=1, max_length=128)]
    credential: Credential | None = None
    # A TOTP code: six digits (spaces allowed, as apps show "123 456").
    totp: Annotated[str | None, Field(min_length=6, max_length=16, pattern=r"^[0-9 ]+$")] = None
    recovery_code: Annotated[str | None, Field(min_length=1, max_length=64)] = None

    @model_validator(mode="after")
    def _exactly_one_factor(self) -> MfaRequest:
        given = [f for f in (self.credential, self.totp, self.recovery_code) if f is not None]
        if len(given) != 1:
            raise ValueError("send exactly one of credential, totp or recovery_code")
        return self

    @property
    def method(self) -> str:
        """The factor sent, as audit events name it."""
        if self.credential is not None:
            return "passkey"
        return "totp" if self.totp is not None else "recovery_code"


class MfaRequiredResponse(BaseModel):
    mfa_required: Literal[True] = True
    mfa_token: str
    expires_in: int
    # The second factors the account has, any of which completes the login:
    # "webauthn" (a passkey), "totp". A recovery code always works too.
    methods: list[Literal["webauthn", "totp"]]
    # PublicKeyCredentialRequestOptions JSON, as py_webauthn's options_to_json
    # writes it; null when the account has no passkey.
    webauthn: dict[str, Any] | None


class CredentialOut(BaseModel):
    id: uuid.UUID
    label: str
    created_at: datetime
    last_used_at: datetime | None
    transports: list[str]
    aaguid: str
    backup_eligible: bool
    backed_up: bool
    # The session that enrolled it (GET /sessions lists it there too).
    enrolled_by_session: str | None

    @classmethod
    def of(cls, row: WebAuthnCredential) -> CredentialOut:
        return cls(
            id=row.id,
            label=row.label,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            transports=row.transport_list,
            aaguid=row.aaguid,
            backup_eligible=row.backup_eligible,
            backed_up=row.backed_up,
            enrolled_by_session=row.enrolled_sid,
        )


class PasskeyAdded(BaseModel):
    """A passkey as the sessions view names it: which one a session enrolled."""

    id: uuid.UUID
    label: str
    created_at: datetime


class RecoveryCodesOut(BaseModel):
    # Shown once: only hashes are kept, nobody can display them again.
    recovery_codes: list[str]


class EnrolmentOut(BaseModel):
    credential: CredentialOut
    # Set for the account's first passkey only (see docs/PASSKEYS.md).
    recovery_codes: list[str] | None = None
