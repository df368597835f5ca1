"""RSA JWKs and RFC 7638 thumbprints."""

from __future__ import annotations

import base64
import json
import string
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.tokens.jwk import public_key_from_jwk, rfc7638_thumbprint, rsa_public_jwk

VECTORS = Path(__file__).parent.parent / "vectors"


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def rfc_jwk() -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads((VECTORS / "rfc7638_example_jwk.json").read_text())
    return jwk


def _b64(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_rfc7638_section_3_1_example_thumbprint(rfc_jwk: dict[str, Any]) -> None:
    assert rfc7638_thumbprint(rfc_jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_thumbprint_ignores_optional_members_and_member_order(rfc_jwk: dict[str, Any]) -> None:
    required = {"n": rfc_jwk["n"], "kty": "RSA", "e": rfc_jwk["e"]}
    assert rfc7638_thumbprint(required) == rfc7638_thumbprint(rfc_jwk)
    assert rfc7638_thumbprint({**required, "use": "enc", "kid": "x"}) == rfc7638_thumbprint(rfc_jwk)


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "RSA", "n": "AQAB"},
        {"kty": "RSA", "n": "", "e": "AQAB"},
        {"kty": "RSA", "n": 5, "e": "AQAB"},
    ],
)
def test_thumbprint_rejects_non_rsa_or_incomplete(jwk: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"expected|must be"):
        rfc7638_thumbprint(jwk)


def test_rsa_public_jwk_round_trips_the_rfc_key(rfc_jwk: dict[str, Any]) -> None:
    key = public_key_from_jwk(rfc_jwk)
    assert key.key_size == 2048
    assert rsa_public_jwk(key) == {"kty": "RSA", "n": rfc_jwk["n"], "e": "AQAB"}


def test_rsa_public_jwk_is_unpadded_base64url(rsa_key: rsa.RSAPrivateKey) -> None:
    jwk = rsa_public_jwk(rsa_key.public_key())
    assert set(jwk) == {"kty", "n", "e"}
    assert jwk["e"] == "AQAB"
    assert set(jwk["n"]) <= set(string.ascii_letters + string.digits + "-_")
    assert public_key_from_jwk(jwk).public_numbers() == rsa_key.public_key().public_numbers()


def test_public_key_from_jwk_rejects_other_key_types() -> None:
    x = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers().x
    with pytest.raises(ValueError, match="kty"):
        public_key_from_jwk({"kty": "EC", "crv": "P-256", "x": _b64(x), "y": _b64(x)})


def test_public_key_from_jwk_rejects_short_modulus() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505  the point of the test
    with pytest.raises(ValueError, match="2048"):
        public_key_from_jwk(rsa_public_jwk(small.public_key()))


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("n", "not base64url!"),
        ("n", "AQAB=="),  # padding is not base64url as JOSE uses it (RFC 7515 §2)
        ("e", None),
        ("e", 65537),
    ],
)
def test_public_key_from_jwk_rejects_bad_encodings(
    rfc_jwk: dict[str, Any], member: str, value: object
) -> None:
    with pytest.raises(ValueError, match="base64url"):
        public_key_from_jwk({**rfc_jwk, member: value})


def test_public_key_from_jwk_rejects_even_exponent(rfc_jwk: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  cryptography's own message
        public_key_from_jwk({**rfc_jwk, "e": _b64(65536)})
