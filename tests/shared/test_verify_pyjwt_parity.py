# ruff: noqa: F401, F811 - the attack suite's fixtures are shared by import, then used as arguments
"""TokenVerifier's own JWS/claims path against the PyJWT-based verifier it replaced.

The verifier parses and checks tokens itself (PyJWT's jwt.decode cost 4-9x
the RSA verify; bench/README.md, target 2). These edge cases pin that every
outcome stayed what it was with PyJWT: the same acceptance and the same
rejection reason, including for oddities the attack suite does not name.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.tokens.claims import AccessClaims
from shared.tokens.verify import TokenRejected, TokenVerifier
from tests.shared.test_verify_attacks import (  # fixtures are shared by import
    AUDIENCE,
    ISSUER,
    LEEWAY,
    RecordingKeySource,
    b64,
    forge,
    header,
    keys,
    kid,
    rs256,
    signing_key,
    user_claims,
    verifier,
)

pytestmark = pytest.mark.anyio

_REQUIRED = ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"]


def pyjwt_reason(token: str, key: rsa.RSAPublicKey) -> str | None:
    """The reason the PyJWT-based verifier gave for a token whose header passed
    (alg RS256, typ at+jwt, known kid): None when it accepted it."""
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=LEEWAY,
            options={"require": _REQUIRED},
        )
    except jwt.ExpiredSignatureError:
        return "expired"
    except jwt.ImmatureSignatureError:
        return "not_yet_valid"
    except jwt.InvalidIssuerError:
        return "bad_issuer"
    except jwt.InvalidAudienceError:
        return "bad_audience"
    except jwt.MissingRequiredClaimError:
        return "missing_claim"
    except jwt.InvalidSignatureError:
        return "bad_signature"
    except (
        jwt.InvalidIssuedAtError,
        jwt.exceptions.InvalidSubjectError,
        jwt.exceptions.InvalidJTIError,
    ):
        return "invalid_claims"
    except jwt.PyJWTError:
        return "malformed"
    try:
        claims = AccessClaims.model_validate(payload)
    except ValueError:
        return "invalid_claims"
    if claims.iat > time.time() + LEEWAY:
        return "not_yet_valid"
    return None


async def our_reason(verifier: TokenVerifier, token: str) -> str | None:
    try:
        await verifier.verify(token)
    except TokenRejected as exc:
        return exc.reason
    return None


NOW = int(time.time())
CASES: list[dict[str, Any]] = [
    {},
    {"exp": "not a number"},
    {"exp": 1.5e18},
    {"exp": None},
    {"nbf": "soon"},
    {"nbf": NOW + 3600, "exp": "x"},
    {"iat": "x"},
    {"iat": NOW + 3600, "nbf": "garbled"},
    {"iat": 1.5},
    {"iss": 7},
    {"iss": ["http://localhost:8000"]},
    {"aud": ""},
    {"aud": []},
    {"aud": [AUDIENCE, 3]},
    {"aud": {"a": AUDIENCE}},
    {"aud": 5},
    {"sub": ["x"]},
    {"jti": 12},
    {"client_id": 7},
    {"roles": ["admin", 1]},
    {"exp": NOW - LEEWAY - 1, "iss": "https://evil.example"},
    {"iss": "https://evil.example", "aud": "other"},
    {"jti": None, "exp": NOW - 3600},
]


@pytest.mark.parametrize("overrides", CASES, ids=lambda c: ",".join(c) or "valid")
async def test_claims_outcomes_match_pyjwt(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str, overrides: dict[str, Any]
) -> None:
    claims = user_claims()
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    token = forge(header(kid), claims, rs256(signing_key))
    assert await our_reason(verifier, token) == pyjwt_reason(token, signing_key.public_key())


async def test_non_canonical_base64_signature_is_malformed_as_before(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    # 256 bytes encode to 342 characters, the last carrying 4 unused bits:
    # flipping one of them decodes to the same signature under another string.
    token = forge(header(kid), user_claims(), rs256(signing_key))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = token[-1]
    twin = token[:-1] + alphabet[alphabet.index(last) | 1]
    assert twin != token
    assert await our_reason(verifier, twin) == "malformed"
    assert pyjwt_reason(twin, signing_key.public_key()) == "malformed"


async def test_payload_that_is_not_json_is_malformed_after_the_signature(
    verifier: TokenVerifier, keys: RecordingKeySource, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    signing_input = f"{b64(json.dumps(header(kid)).encode())}.{b64(b'not json')}"
    token = f"{signing_input}.{b64(rs256(signing_key)(signing_input.encode()))}"
    assert await our_reason(verifier, token) == "malformed"
    assert pyjwt_reason(token, signing_key.public_key()) == "malformed"
