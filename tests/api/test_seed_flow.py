"""The first client's walk (README.md quick start; api.http), in-process
on both database backends."""

from __future__ import annotations

import base64
import json

import pytest

from tests.conftest import SEED, Services, new_user

pytestmark = pytest.mark.anyio


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _header(token: str) -> dict[str, object]:
    h = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))


async def test_register_login_read_profile(services_any_db: Services) -> None:
    s = services_any_db
    r = await s.auth.post("/users", json=SEED)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "name", "email", "date_of_birth", "job_title", "created_at"}
    assert body["date_of_birth"] == "1980-04-14"
    assert r.headers["location"] == f"/users/{body['id']}"
    user_id = body["id"]

    again = await s.auth.post("/users", json={**SEED, "email": "JOHN@Example.COM"})
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["status"] == 409

    login = await s.auth.post("/login", json={"email": SEED["email"], "password": SEED["password"]})
    assert login.status_code == 200, login.text
    assert login.headers["cache-control"] == "no-store"
    tokens = login.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["user_id"] == user_id
    assert tokens["expires_in"] == 600
    assert len(tokens["refresh_token"]) >= 40

    header = _header(tokens["access_token"])
    assert header["alg"] == "RS256"
    assert header["typ"] == "at+jwt"
    claims = _claims(tokens["access_token"])
    assert claims["sub"] == user_id
    assert claims["aud"] == "user-service"
    assert claims["iss"] == "http://localhost:8000"
    assert claims["amr"] == ["pwd"]
    for name in ("exp", "iat", "jti", "sid", "roles", "auth_time", "scope", "client_id"):
        assert name in claims

    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    me = await s.user.get(f"/users/{user_id}", headers=bearer)
    assert me.status_code == 200, me.text
    # The profile is the registration's answer plus whether the email is verified.
    profile = {**body, "email_verified": False}
    assert me.json() == profile
    assert (await s.user.get("/users/me", headers=bearer)).json() == profile


async def test_profile_needs_a_token(services: Services) -> None:
    r = await services.auth.post("/users", json=new_user())
    r = await services.user.get(f"/users/{r.json()['id']}")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="user-service"'
    assert r.headers["content-type"] == "application/problem+json"


async def test_other_users_profile_is_forbidden_whether_or_not_it_exists(
    services: Services,
) -> None:
    alice, bob = new_user(), new_user()
    await services.auth.post("/users", json=alice)
    bob_id = (await services.auth.post("/users", json=bob)).json()["id"]
    login = await services.auth.post(
        "/login", json={"email": alice["email"], "password": alice["password"]}
    )
    bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
    existing = await services.user.get(f"/users/{bob_id}", headers=bearer)
    missing = await services.user.get("/users/00000000-0000-4000-8000-000000000000", headers=bearer)
    garbage = await services.user.get("/users/not-a-uuid", headers=bearer)
    assert existing.status_code == missing.status_code == garbage.status_code == 403
    assert existing.json() == missing.json() == garbage.json()
