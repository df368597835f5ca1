"""A software WebAuthn authenticator plus client, for ceremony tests without a browser.

It produces exactly what a browser's `PublicKeyCredential.toJSON()` would send
(WebAuthn L3 §5.1.8): attestation "none" with an ES256 (EC P-256) key at
registration, and signed assertions at authentication. Every field a real
client fills in can be overridden, which is how the attack tests forge
responses: another origin, another RP ID, no UV flag, an old counter, a
foreign challenge, a crossOrigin ceremony, a wrong user handle.

The structures follow L3 §6.1 (authenticator data), §6.5.4 (attestation
object, "none" format §8.7), §5.8.1 (CollectedClientData) and §6.3.3
(authenticatorGetAssertion signature over authData || SHA-256(clientDataJSON)).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

DEFAULT_ORIGIN = "http://localhost:8000"

_UP, _UV, _BE, _BS, _AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftCredential:
    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0

    def cose_public_key(self) -> bytes:
        numbers = self.private_key.public_key().public_numbers()
        # COSE_Key (RFC 9053 §7.1.1): kty EC2, alg ES256, crv P-256, x, y.
        return cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )


@dataclass
class SoftAuthenticator:
    """A resident-key, user-verifying platform authenticator.

    Args:
        aaguid: 16 bytes identifying the "model".
        backup_eligible / backed_up: the BE / BS flags it reports.
        counter_step: how much the signature counter grows per assertion
            (0 models a synced passkey that always reports 0).
    """

    aaguid: bytes = bytes(16)
    backup_eligible: bool = False
    backed_up: bool = False
    counter_step: int = 1
    credentials: dict[bytes, SoftCredential] = field(default_factory=dict)

    # --- helpers ---------------------------------------------------------

    def _flags(self, *, up: bool, uv: bool, attested: bool) -> int:
        flags = (_UP if up else 0) | (_UV if uv else 0)
        flags |= (_BE if self.backup_eligible else 0) | (_BS if self.backed_up else 0)
        return flags | (_AT if attested else 0)

    @staticmethod
    def client_data(
        *, type_: str, challenge: str, origin: str, cross_origin: bool = False
    ) -> bytes:
        return json.dumps(
            {"type": type_, "challenge": challenge, "origin": origin, "crossOrigin": cross_origin},
            separators=(",", ":"),
        ).encode()

    # --- navigator.credentials.create() ---------------------------------

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str = DEFAULT_ORIGIN,
        rp_id: str | None = None,
        up: bool = True,
        uv: bool = True,
        type_: str = "webauthn.create",
        challenge: str | None = None,
        credential_id: bytes | None = None,
    ) -> dict[str, Any]:
        """Answer PublicKeyCredentialCreationOptions JSON like a browser would."""
        rp = rp_id or options["rp"]["id"]
        cred = SoftCredential(
            credential_id=credential_id or os.urandom(32),
            private_key=ec.generate_private_key(ec.SECP256R1()),
            rp_id=rp,
            user_handle=unb64url(options["user"]["id"]),
        )
        self.credentials[cred.credential_id] = cred
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes([self._flags(up=up, uv=uv, attested=True)])
            + struct.pack(">I", cred.sign_count)
            + self.aaguid
            + struct.pack(">H", len(cred.credential_id))
            + cred.credential_id
            + cred.cose_public_key()
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        cdj = self.client_data(
            type_=type_, challenge=challenge or options["challenge"], origin=origin
        )
        return {
            "id": b64url(cred.credential_id),
            "rawId": b64url(cred.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(cdj),
                "attestationObject": b64url(attestation),
                "transports": ["internal", "hybrid"],
            },
        }

    # --- navigator.credentials.get() ------------------------------------

    def pick(self, options: dict[str, Any]) -> SoftCredential:
        """The credential a browser would use: one in allowCredentials, or any
        resident one for the RP when the list is empty (L3 §6.3.3 step 6)."""
        allowed = [unb64url(d["id"]) for d in options.get("allowCredentials") or []]
        for cred in self.credentials.values():
            if cred.rp_id == options["rpId"] and (not allowed or cred.credential_id in allowed):
                return cred
        raise LookupError("no matching credential (a browser would say NotAllowedError)")

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str = DEFAULT_ORIGIN,
        rp_id: str | None = None,
        up: bool = True,
        uv: bool = True,
        type_: str = "webauthn.get",
        challenge: str | None = None,
        cross_origin: bool = False,
        credential: SoftCredential | None = None,
        sign_count: int | None = None,
        user_handle: bytes | bool | None = True,
    ) -> dict[str, Any]:
        """Answer PublicKeyCredentialRequestOptions JSON like a browser would.

        Args:
            user_handle: True sends the credential's own handle, None/False
                omits it, bytes sends those bytes instead.
            sign_count: report this counter instead of the next one.
        """
        cred = credential or self.pick(options)
        if sign_count is None:
            cred.sign_count += self.counter_step
            count = cred.sign_count
        else:
            count = sign_count
        rp = rp_id or options["rpId"]
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes([self._flags(up=up, uv=uv, attested=False)])
            + struct.pack(">I", count)
        )
        cdj = self.client_data(
            type_=type_,
            challenge=challenge or options["challenge"],
            origin=origin,
            cross_origin=cross_origin,
        )
        signature = cred.private_key.sign(
            auth_data + hashlib.sha256(cdj).digest(), ec.ECDSA(hashes.SHA256())
        )
        response: dict[str, Any] = {
            "clientDataJSON": b64url(cdj),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(signature),
        }
        if user_handle is True:
            response["userHandle"] = b64url(cred.user_handle)
        elif isinstance(user_handle, bytes):
            response["userHandle"] = b64url(user_handle)
        return {
            "id": b64url(cred.credential_id),
            "rawId": b64url(cred.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": response,
        }
