"""WebAuthn ceremony options: what the RP sends to `navigator.credentials.*`.

Both functions answer the JSON exactly as py_webauthn's `options_to_json`
writes it (base64url binary members), which is what the endpoints return
verbatim and what `PublicKeyCredential.parse*OptionsFromJSON` (L3 §5.1.9)
reads in the browser. The RP's policy lives here (docs/PASSKEYS.md):
resident keys and user verification required, attestation "none".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from auth_service.services.webauthn.relying_party import RelyingParty

# py_webauthn is imported where it is used, not here: with the CBOR, ASN.1
# and pyOpenSSL modules under it, it is ~5 MB of every auth process's memory
# (bench/README.md, P7), and only passkey ceremonies need it. The first one
# loads it (once, a fraction of a second).
if TYPE_CHECKING:
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor

__all__ = ["KnownCredential", "authentication_options", "options_dict", "registration_options"]


@dataclass(frozen=True)
class KnownCredential:
    """A descriptor of a registered credential, for allow/exclude lists."""

    credential_id: str
    transports: Sequence[str] = ()


def _descriptors(creds: Sequence[KnownCredential]) -> list[PublicKeyCredentialDescriptor]:
    from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

    out = []
    for c in creds:
        transports = [AuthenticatorTransport(t) for t in c.transports if _is_transport(t)]
        out.append(
            PublicKeyCredentialDescriptor(
                id=_b64decode(c.credential_id), transports=transports or None
            )
        )
    return out


def _is_transport(value: str) -> bool:
    from webauthn.helpers.structs import AuthenticatorTransport

    return value in {t.value for t in AuthenticatorTransport}


def _b64decode(value: str) -> bytes:
    from webauthn.helpers import base64url_to_bytes

    return base64url_to_bytes(value)


def registration_options(
    *,
    rp: RelyingParty,
    user_handle: bytes,
    user_name: str,
    challenge: bytes,
    exclude: Sequence[KnownCredential],
) -> str:
    """PublicKeyCredentialCreationOptions JSON (L3 §5.4), as `options_to_json` writes it.

    `residentKey: required` so every passkey also works without a password
    (L3 §5.4.6, discoverable credentials); `userVerification: required` so a
    passkey alone is two factors (possession + PIN/biometric, L3 §6.2.3);
    `excludeCredentials` lists the user's passkeys so one authenticator is not
    registered twice (L3 §5.4, excludeCredentials); attestation "none" (L3
    §5.4.7): see docs/PASSKEYS.md for why no attestation trust is evaluated.
    """
    from webauthn import generate_registration_options, options_to_json
    from webauthn.helpers.structs import (
        AttestationConveyancePreference,
        AuthenticatorSelectionCriteria,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    options = generate_registration_options(
        rp_id=rp.rp_id,
        rp_name=rp.rp_name,
        user_id=user_handle,
        user_name=user_name,
        challenge=challenge,
        timeout=rp.timeout_ms,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=_descriptors(exclude),
    )
    return options_to_json(options)


def authentication_options(
    *, rp: RelyingParty, challenge: bytes, allow: Sequence[KnownCredential]
) -> str:
    """PublicKeyCredentialRequestOptions JSON (L3 §5.5).

    An empty `allow` list means "any discoverable credential for this RP"
    (L3 §5.5, allowCredentials), which is what passwordless login sends: it
    names no account, so it reveals nothing about which accounts exist.
    """
    from webauthn import generate_authentication_options, options_to_json
    from webauthn.helpers.structs import UserVerificationRequirement

    options = generate_authentication_options(
        rp_id=rp.rp_id,
        challenge=challenge,
        timeout=rp.timeout_ms,
        allow_credentials=_descriptors(allow),
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return options_to_json(options)


def options_dict(options_json: str) -> dict[str, Any]:
    """The options JSON as a dict, for embedding in a larger response body."""
    value: dict[str, Any] = json.loads(options_json)
    return value
