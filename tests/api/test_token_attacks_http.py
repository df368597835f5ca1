"""A named test per token attack, through the user service's HTTP edge.

`tests/shared/test_verify_attacks.py` checks the verifier's reasons; these
check what a client sees: 401 + RFC 6750 challenge + problem body, never 500.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.tokens.jwk import rsa_public_jwk
from tests.conftest import Services, new_user

pytestmark = pytest.mark.anyio

_ATTACKER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def _victim(s: Services) -> tuple[str, dict[str, Any], str]:
    body = new_user()
    await s.auth.post("/users", json=body)
    tok = (
        await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    ).json()
    claims = jwt.decode(tok["access_token"], options={"verify_signature": False})
    return tok["access_token"], claims, tok["refresh_token"]


def _kid(s: Services) -> str:
    return str(s.auth_app.state.ctx.keyring.current_signing_key().kid)


def alg_none(s: Services, token: str, claims: dict[str, Any]) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'at+jwt', 'kid': _kid(s)})}.{_b64(claims)}."


def hs256_with_public_key(s: Services, token: str, claims: dict[str, Any]) -> str:
    # Key confusion: the public key PEM used as an HMAC secret.
    pem = (
        s.auth_app.state.ctx.keyring.current_signing_key()
        .private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    import hashlib
    import hmac

    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'at+jwt', 'kid': _kid(s)})}.{_b64(claims)}"
    sig = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(sig)}"


def tampered_claims(s: Services, token: str, claims: dict[str, Any]) -> str:
    h, _, sig = token.split(".")
    return f"{h}.{_b64({**claims, 'roles': ['admin']})}.{sig}"


def stripped_signature(s: Services, token: str, claims: dict[str, Any]) -> str:
    h, p, _ = token.split(".")
    return f"{h}.{p}."


def foreign_key_known_kid(s: Services, token: str, claims: dict[str, Any]) -> str:
    return jwt.encode(
        claims, _ATTACKER, algorithm="RS256", headers={"typ": "at+jwt", "kid": _kid(s)}
    )


def jku_header(s: Services, token: str, claims: dict[str, Any]) -> str:
    return jwt.encode(
        claims,
        _ATTACKER,
        algorithm="RS256",
        headers={"typ": "at+jwt", "kid": "evil", "jku": "https://evil.example/jwks.json"},
    )


def embedded_jwk(s: Services, token: str, claims: dict[str, Any]) -> str:
    jwk = {**rsa_public_jwk(_ATTACKER.public_key()), "kid": "evil"}
    return jwt.encode(
        claims, _ATTACKER, algorithm="RS256", headers={"typ": "at+jwt", "kid": "evil", "jwk": jwk}
    )


def _resigned(**changes: Any) -> Callable[[Services, str, dict[str, Any]], str]:
    def make(s: Services, token: str, claims: dict[str, Any]) -> str:
        new = {**claims, **changes}
        headers = {"typ": new.pop("__typ", "at+jwt")}
        return (
            str(s.auth_app.state.ctx.keyring.sign(new))
            if headers["typ"] == "at+jwt"
            else _sign_typ(s, new, headers["typ"])
        )

    return make


def _sign_typ(s: Services, claims: dict[str, Any], typ: str) -> str:
    key = s.auth_app.state.ctx.keyring.current_signing_key()
    return jwt.encode(
        claims, key.private_key, algorithm="RS256", headers={"typ": typ, "kid": key.kid}
    )


ATTACKS: dict[str, Callable[[Services, str, dict[str, Any]], str]] = {
    "alg_none": alg_none,
    "hs256_key_confusion": hs256_with_public_key,
    "tampered_claims": tampered_claims,
    "stripped_signature": stripped_signature,
    "foreign_key_known_kid": foreign_key_known_kid,
    "jku_header": jku_header,
    "embedded_jwk_header": embedded_jwk,
    "wrong_issuer": _resigned(iss="https://evil.example"),
    "wrong_audience": _resigned(aud="another-api"),
    "wrong_typ_jwt": _resigned(__typ="JWT"),
    "expired": _resigned(exp=int(time.time()) - 3600, iat=int(time.time()) - 4000),
    "issued_in_future": _resigned(iat=int(time.time()) + 3600, exp=int(time.time()) + 7200),
    "garbage": lambda s, t, c: "not.a.jwt",
    "empty_segments": lambda s, t, c: "..",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_attack_is_rejected_with_401(services: Services, attack: str) -> None:
    token, claims, _ = await _victim(services)
    forged = ATTACKS[attack](services, token, claims)
    r = await services.user.get(
        f"/users/{claims['sub']}", headers={"Authorization": f"Bearer {forged}"}
    )
    assert r.status_code == 401, (attack, r.status_code, r.text)
    assert r.headers["www-authenticate"].startswith(
        'Bearer realm="user-service", error="invalid_token"'
    )
    assert r.headers["content-type"] == "application/problem+json"


async def test_refresh_token_is_not_an_access_token(services: Services) -> None:
    _, claims, refresh = await _victim(services)
    r = await services.user.get(
        f"/users/{claims['sub']}", headers={"Authorization": f"Bearer {refresh}"}
    )
    assert r.status_code == 401


async def test_user_token_is_not_a_service_token(services: Services) -> None:
    token, _, _ = await _victim(services)
    r = await services.user.post(
        "/internal/profiles", json={}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 403


@pytest.mark.parametrize(
    "header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "bearer x.y.z", "Token abc"]
)
async def test_malformed_authorization_headers(services: Services, header: str) -> None:
    r = await services.user.get("/users/me", headers={"Authorization": header})
    assert r.status_code == 401
