"""RSA public keys as JSON Web Keys (RFC 7517, RFC 7518 §6.3) and their thumbprints (RFC 7638)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey, RSAPublicNumbers

__all__ = ["MIN_RSA_BITS", "public_key_from_jwk", "rfc7638_thumbprint", "rsa_public_jwk"]

# NIST SP 800-57 / RFC 7518 §3.3: RS256 keys of 2048 bits or more.
MIN_RSA_BITS = 2048
# A JWKS is trusted input, but a 64k-bit modulus would still make every
# verification slow; nobody legitimately publishes more than 16k bits.
_MAX_RSA_BITS = 16384
# RFC 7515 §2 base64url without padding. Python's decoder silently drops
# characters outside the alphabet, so the alphabet is checked first.
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def _b64url_uint(value: int) -> str:
    """Base64url (no padding) of the minimal big-endian octets of `value` (RFC 7518 §2)."""
    raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _uint_from_b64url(value: object, member: str) -> int:
    if not isinstance(value, str) or _B64URL.fullmatch(value) is None:
        raise ValueError(f"JWK member {member!r}: expected a base64url string")
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    return int.from_bytes(raw, "big")


def rsa_public_jwk(public_key: RSAPublicKey) -> dict[str, str]:
    """The required members of an RSA public JWK.

    Args:
        public_key: the RSA public key.

    Returns:
        `{"kty": "RSA", "n": ..., "e": ...}` with `n` and `e` as base64url
        unsigned big-endian integers without padding (RFC 7518 §6.3.1).
    """
    numbers = public_key.public_numbers()
    return {"kty": "RSA", "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}


def rfc7638_thumbprint(jwk: Mapping[str, object]) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256) of an RSA key, used as its `kid`.

    Args:
        jwk: an RSA JWK; members other than `e`, `kty` and `n` are ignored
            (RFC 7638 §3.2), so a JWK with `kid`/`use`/`alg` hashes the same.

    Returns:
        base64url (no padding) of SHA-256 over the canonical JSON of the
        required members in lexicographic order without whitespace (§3.1, §3.3).

    Raises:
        ValueError: the JWK is not RSA or lacks a required member.
    """
    if jwk.get("kty") != "RSA":
        raise ValueError(f"expected kty 'RSA', got {jwk.get('kty')!r:.20}")
    required: dict[str, str] = {}
    for member in ("e", "kty", "n"):
        value = jwk.get(member)
        if not isinstance(value, str) or not value:
            raise ValueError(f"JWK member {member!r} must be a non-empty string")
        required[member] = value
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def public_key_from_jwk(jwk: Mapping[str, object]) -> RSAPublicKey:
    """Parse an RSA public JWK into a key object (done once per key, then cached).

    Args:
        jwk: a JWK with `kty`, `n` and `e` (RFC 7518 §6.3.1).

    Returns:
        The RSA public key.

    Raises:
        ValueError: `kty` is not "RSA", `n`/`e` are not base64url integers,
            the modulus is under 2048 bits (RFC 7518 §3.3) or absurdly large,
            or the exponent is not a valid RSA public exponent.
    """
    if jwk.get("kty") != "RSA":
        raise ValueError(f"expected kty 'RSA', got {jwk.get('kty')!r:.20}")
    n = _uint_from_b64url(jwk.get("n"), "n")
    e = _uint_from_b64url(jwk.get("e"), "e")
    bits = n.bit_length()
    if not MIN_RSA_BITS <= bits <= _MAX_RSA_BITS:
        raise ValueError(
            f"expected an RSA modulus of {MIN_RSA_BITS}..{_MAX_RSA_BITS} bits, got {bits}"
        )
    # cryptography rejects even exponents, e < 3 and e >= n with ValueError.
    return RSAPublicNumbers(e, n).public_key()
