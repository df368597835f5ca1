"""The ring's tokens are exactly the ones PyJWT would sign, and verify as ever.

`auth_service.keys.jws` serializes RS256 tokens itself (bench/README.md,
P14). PKCS#1 v1.5 signatures are deterministic, so the same key and claims
must give the very same string as `jwt.encode`: header order, separators,
escaping and padding included.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest

from auth_service.keys import KeyRing

_CLAIMS: list[dict[str, Any]] = [
    {
        "iss": "http://localhost:8000",
        "sub": str(uuid.uuid4()),
        "aud": "user-service",
        "exp": 2_000_000_000,
        "iat": 1_900_000_000,
        "jti": uuid.uuid4().hex,
        "client_id": "idp-web",
        "scope": "openid profile",
        "sid": "s" * 22,
        "roles": ["admin"],
        "amr": ["pwd", "hwk"],
        "auth_time": 1_900_000_000,
    },
    {
        "sub": 'Zoë «quoted» "\\" \u2028',
        "n": 1.5,
        "none": None,
        "t": True,
        "nested": {"a": [1, {}]},
    },
    {},
]


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.load(tmp_path / "keys", generate_if_missing=True)


@pytest.mark.parametrize("claims", _CLAIMS)
def test_access_tokens_are_pyjwts_bytes(ring: KeyRing, claims: dict[str, Any]) -> None:
    key = ring.current_signing_key()
    expected = jwt.encode(
        claims, key.private_key, algorithm="RS256", headers={"typ": "at+jwt", "kid": key.kid}
    )
    assert ring.sign(claims) == expected


def test_id_tokens_are_pyjwts_bytes(ring: KeyRing) -> None:
    key = ring.current_signing_key()
    claims = {"iss": "http://localhost:8000", "sub": "u", "aud": "app", "nonce": "n"}
    expected = jwt.encode(
        claims, key.private_key, algorithm="RS256", headers={"typ": "JWT", "kid": key.kid}
    )
    assert ring.sign_id_token(claims) == expected


def test_a_signed_token_verifies_with_the_public_key(ring: KeyRing) -> None:
    now = int(time.time())
    token = ring.sign({"sub": "u", "iat": now, "exp": now + 60})
    key = ring.current_signing_key()
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "kid": key.kid, "typ": "at+jwt"}
    claims = jwt.decode(token, key.private_key.public_key(), algorithms=["RS256"])
    assert claims["sub"] == "u"
    # One changed payload byte and the signature no longer holds.
    head, payload, sig = token.split(".")
    forged = f"{head}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{sig}"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, key.private_key.public_key(), algorithms=["RS256"])


def test_claims_that_are_not_json_are_refused(ring: KeyRing) -> None:
    with pytest.raises(TypeError):
        ring.sign({"exp": object()})
