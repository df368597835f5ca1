"""RS256 compact JWS serialization (RFC 7515 §7.1) of the tokens the ring signs.

Why not `jwt.encode`: around the RSA signature itself PyJWT copies the
claims, re-checks the key and the algorithm, and builds and sorts the same
header for every token, ~30 µs of a refresh in the service (bench/README.md,
P14) for a header that is the same for every token one key signs. Here the
header segment is made once per key and each token costs one JSON dump, two
base64url encodings and the signature. The bytes are PyJWT's: the header
keys sorted, compact separators, ASCII-escaped JSON (RSASSA-PKCS1-v1_5 is
deterministic, so tests/auth/test_jws.py compares whole tokens with
`jwt.encode`'s). Verification stays with `shared.tokens.verify`.
"""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.hashes import SHA256

__all__ = ["header_segment", "sign_rs256"]

# Stateless, so built once (RFC 7518 §3.3: RS256 is PKCS#1 v1.5 with SHA-256).
_PKCS1V15 = PKCS1v15()
_SHA256 = SHA256()


def _b64url(data: bytes) -> bytes:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@functools.lru_cache(maxsize=64)  # a few keys live at a time (rotation keeps the last ones)
def header_segment(kid: str, typ: str) -> bytes:
    """The encoded JOSE header of an RS256 token signed by `kid`."""
    header = {"alg": "RS256", "kid": kid, "typ": typ}
    return _b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())


def sign_rs256(header: bytes, claims: dict[str, Any], key: RSAPrivateKey) -> str:
    """The compact JWS of `claims` under an encoded `header` (`header_segment`).

    Raises:
        TypeError: a claim is not JSON-serializable (no datetimes: NumericDates are ints).
    """
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = header + b"." + payload
    signature = _b64url(key.sign(signing_input, _PKCS1V15, _SHA256))
    return (signing_input + b"." + signature).decode("ascii")
