"""Request and response bodies of the TOTP endpoints (/totp)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TotpEnrolRequest(_Request):
    # Only for the account's first second factor after a login that is not
    # recent (docs/PASSKEYS.md, "TOTP"); ignored otherwise.
    password: Annotated[SecretStr | None, Field(min_length=1, max_length=1024)] = None


class TotpEnrolOut(BaseModel):
    # Base32 (RFC 4648), for typing into an app by hand; shown once.
    secret: str
    # The Key URI Format authenticator apps read (issuer, account, secret;
    # SHA-1, 6 digits, 30 s are its defaults).
    otpauth_uri: str
    # The URI as a QR code: an SVG image in a data: URI, made on the server.
    qr_svg: str


class TotpConfirmRequest(_Request):
    code: Annotated[str, Field(min_length=6, max_length=16, pattern=r"^[0-9 ]+$")]


class TotpConfirmOut(BaseModel):
    # Set when TOTP is the account's first second factor: shown once.
    recovery_codes: list[str] | None = None


class TotpStatusOut(BaseModel):
    # A second factor now (confirmed).
    enabled: bool
    # An enrolment was started and not confirmed yet.
    pending: bool
