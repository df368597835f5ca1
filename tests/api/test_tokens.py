"""Login, the OAuth2 token endpoint, refresh rotation and reuse, logout, sessions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import Services, new_user, rejected_within_a_second, start_services

pytestmark = pytest.mark.anyio


async def _registered_login(s: Services) -> tuple[dict[str, str], dict[str, str]]:
    body = new_user()
    assert (await s.auth.post("/users", json=body)).status_code == 201
    r = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    assert r.status_code == 200, r.text
    return body, r.json()


def _bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def test_unknown_email_and_wrong_password_answer_alike(services: Services) -> None:
    body, _ = await _registered_login(services)
    wrong = await services.auth.post(
        "/login", json={"email": body["email"], "password": "Wrong-password-123"}
    )
    unknown = await services.auth.post(
        "/login", json={"email": "nobody@example.com", "password": "Wrong-password-123"}
    )
    garbage = await services.auth.post("/login", json={"email": "not an email", "password": "x"})
    assert wrong.status_code == unknown.status_code == garbage.status_code == 401
    assert wrong.json() == unknown.json() == garbage.json()
    assert wrong.headers["content-type"] == unknown.headers["content-type"]


async def test_oauth2_password_and_refresh_grants(services: Services) -> None:
    body, _ = await _registered_login(services)
    r = await services.auth.post(
        "/token",
        data={"grant_type": "password", "username": body["email"], "password": body["password"]},
    )
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    tok = r.json()
    assert tok["token_type"] == "Bearer"
    r2 = await services.auth.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]}
    )
    assert r2.status_code == 200
    assert r2.json()["refresh_token"] != tok["refresh_token"]


async def test_oauth2_errors_follow_rfc6749(services: Services) -> None:
    bad = await services.auth.post(
        "/token",
        data={"grant_type": "password", "username": "a@b.co", "password": "nope-nope-nope"},
    )
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_grant"
    # client_credentials is a grant now (tests/api/test_oauth_client_credentials.py).
    unsupported = await services.auth.post(
        "/token", data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code"}
    )
    assert unsupported.json()["error"] == "unsupported_grant_type"
    missing = await services.auth.post("/token", data={"grant_type": "password"})
    assert missing.json()["error"] == "invalid_request"
    as_json = await services.auth.post("/token", json={"grant_type": "password"})
    assert as_json.status_code == 400


async def test_refresh_rotates_and_reuse_revokes_the_session(services: Services) -> None:
    _, tokens = await _registered_login(services)
    first = tokens["refresh_token"]
    r = await services.auth.post("/token/refresh", json={"refresh_token": first})
    assert r.status_code == 200
    rotated = r.json()
    assert rotated["refresh_token"] != first
    r = await services.auth.post("/token/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert r.status_code == 200
    latest = r.json()
    # The first token comes back after its successor was used: two parties
    # hold this family. Theft suspected, the whole session dies.
    reuse = await services.auth.post("/token/refresh", json={"refresh_token": first})
    assert reuse.status_code == 401
    after = await services.auth.post(
        "/token/refresh", json={"refresh_token": latest["refresh_token"]}
    )
    assert after.status_code == 401
    assert await rejected_within_a_second(services.user, "/users/me", _bearer(latest))


async def test_retry_of_a_refresh_gets_the_same_successor_and_forks_nothing(
    services: Services,
) -> None:
    """The retry of a refresh whose answer was lost (docs/ASVS.md, 7.2)."""
    _, tokens = await _registered_login(services)
    first = tokens["refresh_token"]
    lost = await services.auth.post("/token/refresh", json={"refresh_token": first})
    assert lost.status_code == 200
    # The client never saw that answer and retries with the same token.
    retry = await services.auth.post("/token/refresh", json={"refresh_token": first})
    assert retry.status_code == 200, retry.text
    assert retry.json()["refresh_token"] == lost.json()["refresh_token"]
    assert (await services.user.get("/users/me", headers=_bearer(retry.json()))).status_code == 200
    # One successor only: once it is used, the first token is plain reuse.
    nxt = await services.auth.post(
        "/token/refresh", json={"refresh_token": retry.json()["refresh_token"]}
    )
    assert nxt.status_code == 200
    assert (
        await services.auth.post("/token/refresh", json={"refresh_token": first})
    ).status_code == 401
    assert await rejected_within_a_second(services.user, "/users/me", _bearer(nxt.json()))


async def test_without_a_retry_grace_any_second_presentation_is_reuse(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str]
) -> None:
    async for s in start_services(
        tmp_path=tmp_path,
        redis_prefix=redis_prefix,
        urls=sqlite_urls,
        auth={"refresh_retry_grace_seconds": 0},
    ):
        _, tokens = await _registered_login(s)
        r = await s.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 200
        again = await s.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert again.status_code == 401
        assert await rejected_within_a_second(s.user, "/users/me", _bearer(r.json()))


async def test_concurrent_refreshes_have_exactly_one_winner(services: Services) -> None:
    _, tokens = await _registered_login(services)
    results = await asyncio.gather(
        *(
            services.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
            for _ in range(10)
        )
    )
    # One successor is minted; every presentation inside the retry grace
    # gets that same one back, so the family cannot fork.
    winners = {r.json()["refresh_token"] for r in results if r.status_code == 200}
    assert len(winners) == 1, [r.status_code for r in results]
    (successor,) = winners
    assert (
        await services.auth.post("/token/refresh", json={"refresh_token": successor})
    ).status_code == 200
    # The successor was used: the original is now reuse.
    assert (
        await services.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).status_code == 401


async def test_unknown_refresh_token_is_401(services: Services) -> None:
    r = await services.auth.post("/token/refresh", json={"refresh_token": "A" * 43})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"


async def test_logout_revokes_access_and_refresh(services: Services) -> None:
    _, tokens = await _registered_login(services)
    assert (await services.user.get("/users/me", headers=_bearer(tokens))).status_code == 200
    out = await services.auth.post("/logout", headers=_bearer(tokens))
    assert out.status_code == 204
    assert await rejected_within_a_second(services.user, "/users/me", _bearer(tokens))
    assert (
        await services.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).status_code == 401
    assert (await services.auth.post("/logout", headers=_bearer(tokens))).status_code == 401


async def test_sessions_list_and_revoke_own_only(services: Services) -> None:
    body, t1 = await _registered_login(services)
    t2 = (
        await services.auth.post(
            "/login",
            json={"email": body["email"], "password": body["password"]},
            headers={"user-agent": "phone"},
        )
    ).json()
    _, other = await _registered_login(services)
    listed = await services.auth.get("/sessions", headers=_bearer(t1))
    assert listed.status_code == 200
    sessions = listed.json()
    assert len(sessions) == 2
    assert sum(s["current"] for s in sessions) == 1
    phone = next(s for s in sessions if s["user_agent"] == "phone")
    other_sid = (await services.auth.get("/sessions", headers=_bearer(other))).json()[0]["sid"]
    assert (
        await services.auth.delete(f"/sessions/{other_sid}", headers=_bearer(t1))
    ).status_code == 404
    assert (await services.user.get("/users/me", headers=_bearer(other))).status_code == 200
    assert (
        await services.auth.delete(f"/sessions/{phone['sid']}", headers=_bearer(t1))
    ).status_code == 204
    assert await rejected_within_a_second(services.user, "/users/me", _bearer(t2))
    assert (await services.user.get("/users/me", headers=_bearer(t1))).status_code == 200
    assert (await services.auth.delete("/sessions/nope", headers=_bearer(t1))).status_code == 404


async def test_jwks_and_discovery(services: Services) -> None:
    jwks = await services.auth.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    assert "max-age" in jwks.headers["cache-control"]
    keys = jwks.json()["keys"]
    assert keys
    assert all(k["kty"] == "RSA" and k["alg"] == "RS256" and k["use"] == "sig" for k in keys)
    assert all("d" not in k and "p" not in k for k in keys)  # public halves only
    meta = (await services.auth.get("/.well-known/openid-configuration")).json()
    assert meta["issuer"] == "http://localhost:8000"
    assert meta["jwks_uri"].endswith("/.well-known/jwks.json")
    assert meta["token_endpoint"].endswith("/token")
