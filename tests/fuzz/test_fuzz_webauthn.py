"""Property-based fuzzing of the WebAuthn response parsing.

The parsers live in auth_service/services/webauthn/ceremonies.py.

`credential` in POST /webauthn/*/verify and /login/mfa is an untrusted JSON
object whose members carry base64url of JSON (clientDataJSON), of a binary
structure (authenticatorData) and of CBOR (attestationObject, with a COSE key
inside). The one property: every entry point either succeeds or raises
`CeremonyFailed`; anything else (a cbor2 error that is not a ValueError, a
RecursionError from nested CBOR, an OverflowError...) would be a 500.

Layers, from blind to close: arbitrary JSON; the right shape with random
base64url members; a clientDataJSON that passes the type/origin/challenge
checks so the fuzzer reaches authenticatorData and the CBOR/COSE parsers.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auth_service.errors import CeremonyFailed
from auth_service.services.webauthn.ceremonies import (
    assertion_credential_id,
    client_challenge,
    verify_assertion,
    verify_registration,
)
from auth_service.services.webauthn.relying_party import RelyingParty

pytestmark = pytest.mark.fuzz

RP = RelyingParty(
    rp_id="localhost",
    rp_name="Identity Platform",
    origins=("http://localhost:8000",),
    timeout_ms=300_000,
)
CHALLENGE = b"fuzz-challenge-0123456789abcdef"
USER_HANDLE = b"\x01" * 16

_FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _all_entry_points(credential: Any) -> None:
    """Run every parser on `credential`; only CeremonyFailed may escape."""
    calls = [
        lambda: client_challenge(credential),
        lambda: assertion_credential_id(credential),
        lambda: verify_registration(
            credential=credential, expected_challenge=CHALLENGE, expected_rp=RP
        ),
        lambda: verify_assertion(
            credential=credential,
            expected_challenge=CHALLENGE,
            expected_rp=RP,
            expected_user_handle=USER_HANDLE,
            require_user_handle=False,
            credential_public_key=_COSE_EC2_KEY,
            credential_sign_count=0,
            credential_backup_eligible=False,
        ),
    ]
    for call in calls:
        try:
            call()
        except CeremonyFailed as exc:
            reason = exc.reason
        else:
            continue
        assert reason  # a stable label for the audit trail


# A syntactically valid COSE EC2 P-256 public key (the point need not be on
# the curve for parsing; verification fails later, as CeremonyFailed).
_COSE_EC2_KEY = cbor2.dumps({1: 2, 3: -7, -1: 1, -2: b"\x01" * 32, -3: b"\x02" * 32})

_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
_json = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=15,
)
# CBOR values of every major type, including tags, undefined and deep nesting.
_cbor = st.recursive(
    _json_scalars | st.binary(max_size=40) | st.integers(min_value=-(2**70), max_value=2**70),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.integers(-5, 5) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=15,
)
_b64_member = st.one_of(
    st.binary(max_size=300).map(_b64),
    st.text(max_size=60),
    _json,
)


@_FUZZ
@given(credential=_json)
def test_arbitrary_json_credentials_only_fail_the_ceremony(credential: Any) -> None:
    _all_entry_points(credential)


@st.composite
def _shaped_credential(draw: st.DrawFn) -> dict[str, Any]:
    response = {
        name: draw(_b64_member)
        for name in (
            "clientDataJSON",
            "attestationObject",
            "authenticatorData",
            "signature",
            "userHandle",
        )
        if draw(st.booleans())
    }
    if draw(st.booleans()):
        response["transports"] = draw(st.lists(st.text(max_size=10), max_size=3) | _json)
    raw_id = draw(st.binary(min_size=0, max_size=80))
    return {
        "id": draw(st.just(_b64(raw_id)) | st.text(max_size=20)),
        "rawId": draw(st.just(_b64(raw_id)) | _b64_member),
        "type": draw(st.sampled_from(["public-key", "", "password"])),
        "response": response,
        **draw(
            st.dictionaries(
                st.sampled_from(["authenticatorAttachment", "clientExtensionResults"]),
                _json,
                max_size=2,
            )
        ),
    }


@_FUZZ
@given(credential=_shaped_credential())
def test_credential_shaped_garbage_only_fails_the_ceremony(credential: dict[str, Any]) -> None:
    _all_entry_points(credential)


def _client_data(kind: str) -> bytes:
    return json.dumps(
        {
            "type": kind,
            "challenge": _b64(CHALLENGE),
            "origin": RP.origins[0],
            "crossOrigin": False,
        }
    ).encode()


_RP_ID_HASH = hashlib.sha256(RP.rp_id.encode()).digest()


@st.composite
def _authenticator_data(draw: st.DrawFn) -> bytes:
    """authenticatorData (L3 §6.1): right rpIdHash, flags UP|UV plus random
    AT/ED bits, then random or CBOR-ish attested data and extensions."""
    flags = 0x05 | draw(st.sampled_from([0, 0x40, 0x80, 0xC0, 0x08, 0x10, 0x18]))
    counter = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big")
    tail = b""
    if flags & 0x40:  # attested credential data
        cred_id = draw(st.binary(max_size=40))
        declared = draw(st.just(len(cred_id)) | st.integers(0, 2**16 - 1))
        tail += draw(st.binary(min_size=16, max_size=16)) + declared.to_bytes(2, "big") + cred_id
        tail += draw(st.just(_COSE_EC2_KEY) | _cbor.map(cbor2.dumps) | st.binary(max_size=80))
    if flags & 0x80:  # extensions
        tail += draw(_cbor.map(cbor2.dumps) | st.binary(max_size=40))
    if draw(st.booleans()):
        tail += draw(st.binary(max_size=20))  # trailing garbage
    return _RP_ID_HASH + bytes([flags]) + counter + tail


@_FUZZ
@given(auth_data=_authenticator_data(), signature=st.binary(max_size=100))
def test_assertions_with_hostile_authenticator_data_only_fail(
    auth_data: bytes, signature: bytes
) -> None:
    raw_id = b"\x07" * 16
    credential = {
        "id": _b64(raw_id),
        "rawId": _b64(raw_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": _b64(_client_data("webauthn.get")),
            "authenticatorData": _b64(auth_data),
            "signature": _b64(signature),
            "userHandle": _b64(USER_HANDLE),
        },
    }
    _all_entry_points(credential)


@_FUZZ
@given(
    fmt=st.sampled_from(["none", "packed", "fido-u2f", "tpm", "apple", "android-key", "x"]) | _cbor,
    auth_data=_authenticator_data() | st.binary(max_size=120),
    att_stmt=_cbor,
    extra=st.dictionaries(st.text(max_size=6), _cbor, max_size=2),
)
def test_registrations_with_hostile_attestation_objects_only_fail(
    fmt: Any, auth_data: bytes, att_stmt: Any, extra: dict[str, Any]
) -> None:
    attestation = cbor2.dumps({"fmt": fmt, "authData": auth_data, "attStmt": att_stmt, **extra})
    raw_id = b"\x09" * 16
    credential = {
        "id": _b64(raw_id),
        "rawId": _b64(raw_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": _b64(_client_data("webauthn.create")),
            "attestationObject": _b64(attestation),
            "transports": ["internal"],
        },
    }
    _all_entry_points(credential)


@pytest.mark.parametrize(
    "attestation",
    [
        b"\x81" * 3000 + b"\x00",  # 3000 nested CBOR arrays
        b"\xa1\x00" * 3000 + b"\x00",  # 3000 nested CBOR maps
        b"\xd9\xd9\xf7" * 3000 + b"\x00",  # 3000 nested self-describe tags
        b"\x5b" + b"\xff" * 8,  # a byte string claiming 2^64 - 1 bytes
    ],
    ids=["nested-arrays", "nested-maps", "nested-tags", "huge-length"],
)
def test_pathological_cbor_only_fails_the_ceremony(attestation: bytes) -> None:
    credential = {
        "id": _b64(b"\x09" * 16),
        "rawId": _b64(b"\x09" * 16),
        "type": "public-key",
        "response": {
            "clientDataJSON": _b64(_client_data("webauthn.create")),
            "attestationObject": _b64(attestation),
        },
    }
    _all_entry_points(credential)
