"""WebAuthn responses verified on top of py_webauthn (options: webauthn_options.py).

py_webauthn does the cryptography and the bulk of the L3 §7.1/§7.2 checks.
This module adds the checks it leaves to the RP and puts a stable `reason`
on every failure (for the audit trail; clients see one generic answer):

- `crossOrigin: true` is refused: the page forbids framing, so a ceremony
  run inside a frame is not ours (L3 §7.2 step 13, §13.4.9).
- the user handle must name the credential's owner (L3 §7.2 step 6).
- the backup-eligible flag must not change over a credential's life
  (L3 §7.2 step 18: it is fixed at creation).
- the signature counter is compared only after the signature verified
  (L3 §7.2 steps 21-22): a regression is a clone signal only when the
  assertion is genuine; an unsigned low counter is just a forgery.

User verification is required in every ceremony (docs/PASSKEYS.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from auth_service.errors import CeremonyFailed
from auth_service.models.webauthn import MAX_CREDENTIAL_ID_BYTES, NewCredential
from auth_service.services.webauthn.relying_party import RelyingParty

# py_webauthn is imported where it is used, as in options.py: ~5 MB of every
# auth process's memory that only passkey ceremonies need (bench/README.md, P7).
if TYPE_CHECKING:
    from webauthn.helpers.structs import (
        AuthenticationCredential,
        ClientDataType,
        RegistrationCredential,
    )

__all__ = [
    "Assertion",
    "NewCredential",
    "assertion_credential_id",
    "client_challenge",
    "verify_assertion",
    "verify_registration",
]


def _parse_errors() -> tuple[type[Exception], ...]:
    """Anything py_webauthn (or the CBOR/COSE parsing under it) raises on hostile
    input. Parsing untrusted bytes must end in a 4xx, never in a 500."""
    from webauthn.helpers.exceptions import WebAuthnException

    return (WebAuthnException, ValueError, KeyError, TypeError, IndexError)


@dataclass(frozen=True)
class Assertion:
    """What a verified assertion yields (L3 §7.2 steps 22-24)."""

    credential_id: str
    new_sign_count: int
    backed_up: bool


def _b64decode(value: str) -> bytes:
    from webauthn.helpers import base64url_to_bytes

    return base64url_to_bytes(value)


def client_challenge(credential: Mapping[str, Any]) -> bytes:
    """The challenge a response claims to answer, read from its clientDataJSON.

    Only a lookup key for the pending ceremony: the value is untrusted until
    the full verification below has matched it against the stored challenge.

    Raises:
        CeremonyFailed: `malformed` when there is no readable challenge.
    """
    from webauthn.helpers import parse_client_data_json

    try:
        response = credential["response"]
        raw = _b64decode(response["clientDataJSON"])
        return parse_client_data_json(raw).challenge
    except _parse_errors():
        raise CeremonyFailed("malformed") from None


def assertion_credential_id(credential: Mapping[str, Any]) -> str:
    """The credential id an assertion names (`rawId`, base64url, re-encoded canonically).

    Raises:
        CeremonyFailed: `malformed`.
    """
    from webauthn.helpers import bytes_to_base64url, parse_authentication_credential_json

    try:
        parsed = parse_authentication_credential_json(dict(credential))
    except _parse_errors():
        raise CeremonyFailed("malformed") from None
    return bytes_to_base64url(parsed.raw_id)


def _check_client_data(
    raw: bytes, *, expected_type: ClientDataType, expected_origins: Sequence[str]
) -> None:
    from webauthn.helpers import parse_client_data_json

    # py_webauthn checks type and origin too; checking here first gives each
    # failure its own audit reason (wrong ceremony vs. phishing origin).
    try:
        data = parse_client_data_json(raw)
    except _parse_errors():
        raise CeremonyFailed("malformed") from None
    if data.type != expected_type:
        raise CeremonyFailed("wrong_ceremony_type")
    if data.origin not in expected_origins:
        raise CeremonyFailed("origin_mismatch")
    if data.cross_origin:
        raise CeremonyFailed("cross_origin")


def _check_authenticator_data(raw: bytes, *, expected_rp_id: str) -> None:
    from webauthn.helpers import parse_authenticator_data

    try:
        auth_data = parse_authenticator_data(raw)
    except _parse_errors():
        raise CeremonyFailed("malformed") from None
    if auth_data.rp_id_hash != hashlib.sha256(expected_rp_id.encode()).digest():
        raise CeremonyFailed("rp_id_mismatch")
    if not auth_data.flags.up:
        raise CeremonyFailed("user_not_present")
    if not auth_data.flags.uv:
        raise CeremonyFailed("user_not_verified")


def verify_registration(
    *, credential: Mapping[str, Any], expected_challenge: bytes, expected_rp: RelyingParty
) -> NewCredential:
    """Verify a `navigator.credentials.create()` response (L3 §7.1).

    Args:
        credential: the PublicKeyCredential as `toJSON()` serialises it.
        expected_challenge: the challenge this user's pending registration holds.
        expected_rp: the RP ID and origins the ceremony must have run for.

    Returns:
        The new credential record to store.

    Raises:
        CeremonyFailed: with a `reason` naming the first failed check.
    """
    from webauthn import verify_registration_response
    from webauthn.helpers import bytes_to_base64url, parse_registration_credential_json
    from webauthn.helpers.structs import ClientDataType, CredentialDeviceType

    try:
        parsed: RegistrationCredential = parse_registration_credential_json(dict(credential))
    except _parse_errors():
        raise CeremonyFailed("malformed") from None
    _check_client_data(
        parsed.response.client_data_json,
        expected_type=ClientDataType.WEBAUTHN_CREATE,
        expected_origins=expected_rp.origins,
    )
    try:
        verified = verify_registration_response(
            credential=parsed,
            expected_challenge=expected_challenge,
            expected_rp_id=expected_rp.rp_id,
            expected_origin=list(expected_rp.origins),
            require_user_presence=True,
            require_user_verification=True,
        )
    except _parse_errors() as exc:
        raise CeremonyFailed(_registration_reason(str(exc))) from None
    if len(verified.credential_id) > MAX_CREDENTIAL_ID_BYTES:
        raise CeremonyFailed("credential_id_too_long")  # L3 §7.1 step 24
    transports = tuple(t.value for t in parsed.response.transports or ())
    return NewCredential(
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=transports,
        aaguid=verified.aaguid,
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        backed_up=verified.credential_backed_up,
    )


def _registration_reason(message: str) -> str:
    lowered = message.lower()
    for needle, reason in (
        ("challenge", "challenge_mismatch"),
        ("rp id", "rp_id_mismatch"),
        ("user verification", "user_not_verified"),
        ("user presence", "user_not_present"),
        ("alg", "unsupported_algorithm"),
        ("attestation", "attestation_invalid"),
    ):
        if needle in lowered:
            return reason
    return "registration_invalid"


def verify_assertion(
    *,
    credential: Mapping[str, Any],
    expected_challenge: bytes,
    expected_rp: RelyingParty,
    expected_user_handle: bytes,
    require_user_handle: bool,
    credential_public_key: bytes,
    credential_sign_count: int,
    credential_backup_eligible: bool,
) -> Assertion:
    """Verify a `navigator.credentials.get()` response (L3 §7.2).

    Args:
        credential: the PublicKeyCredential as `toJSON()` serialises it.
        expected_challenge: the challenge the pending ceremony holds.
        expected_rp: the RP ID and origins the ceremony must have run for.
        expected_user_handle: the stored credential owner's user handle.
        require_user_handle: true for discoverable-credential (passwordless)
            login, where the user handle is what identifies the user
            (L3 §7.2 step 6); with a known user it is checked when present.
        credential_public_key: the stored COSE public key.
        credential_sign_count: the stored signature counter.
        credential_backup_eligible: the BE flag stored at registration.

    Returns:
        The new counter and backup state to store.

    Raises:
        CeremonyFailed: with a `reason` naming the first failed check.
    """
    from webauthn import verify_authentication_response
    from webauthn.helpers import bytes_to_base64url, parse_authentication_credential_json
    from webauthn.helpers.structs import ClientDataType, CredentialDeviceType

    try:
        parsed: AuthenticationCredential = parse_authentication_credential_json(dict(credential))
    except _parse_errors():
        raise CeremonyFailed("malformed") from None
    handle = parsed.response.user_handle
    if handle is None and require_user_handle:
        raise CeremonyFailed("user_handle_missing")
    if handle is not None and handle != expected_user_handle:
        raise CeremonyFailed("user_handle_mismatch")
    _check_client_data(
        parsed.response.client_data_json,
        expected_type=ClientDataType.WEBAUTHN_GET,
        expected_origins=expected_rp.origins,
    )
    _check_authenticator_data(parsed.response.authenticator_data, expected_rp_id=expected_rp.rp_id)
    try:
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=expected_challenge,
            expected_rp_id=expected_rp.rp_id,
            expected_origin=list(expected_rp.origins),
            credential_public_key=credential_public_key,
            # The counter is checked below, after the signature (see module doc).
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except _parse_errors() as exc:
        reason = "challenge_mismatch" if "challenge" in str(exc).lower() else "signature_invalid"
        raise CeremonyFailed(reason) from None
    new = verified.new_sign_count
    if (new > 0 or credential_sign_count > 0) and new <= credential_sign_count:
        # L3 §6.1.1: a counter that did not grow means a cloned authenticator
        # or a replayed response. Either way the assertion is refused.
        raise CeremonyFailed("sign_count_regression")
    backup_eligible = verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE
    if backup_eligible != credential_backup_eligible:
        raise CeremonyFailed("backup_eligibility_changed")
    return Assertion(
        credential_id=bytes_to_base64url(verified.credential_id),
        new_sign_count=new,
        backed_up=verified.credential_backed_up,
    )
