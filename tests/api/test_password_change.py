"""POST /password/change: the current password, the policy, the other sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import Services, new_user, rejected_within_a_second, start_services

pytestmark = pytest.mark.anyio

NEW = "velvet-orbit-plum-harbour-42"


def _bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def _login(s: Services, email: str, password: str) -> dict[str, str]:
    r = await s.auth.post("/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return r.json()


async def _account(s: Services) -> dict[str, str]:
    body = new_user()
    assert (await s.auth.post("/users", json=body)).status_code == 201
    return body


async def test_change_keeps_this_session_and_revokes_every_other(
    services_any_db: Services,
) -> None:
    s = services_any_db
    body = await _account(s)
    mine = await _login(s, body["email"], body["password"])
    other = await _login(s, body["email"], body["password"])
    r = await s.auth.post(
        "/password/change",
        json={"current_password": body["password"], "new_password": NEW},
        headers=_bearer(mine),
    )
    assert r.status_code == 204, r.text
    # The other device is out: its access token within a second, its refresh token now.
    assert await rejected_within_a_second(s.user, "/users/me", _bearer(other))
    refresh = await s.auth.post("/token/refresh", json={"refresh_token": other["refresh_token"]})
    assert refresh.status_code == 401
    # This device stays in.
    assert (await s.user.get("/users/me", headers=_bearer(mine))).status_code == 200
    again = await s.auth.post("/token/refresh", json={"refresh_token": mine["refresh_token"]})
    assert again.status_code == 200
    # The new password works, the old one no longer.
    await _login(s, body["email"], NEW)
    old = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    assert old.status_code == 401


async def test_wrong_current_password_is_401_and_changes_nothing(services: Services) -> None:
    body = await _account(services)
    tokens = await _login(services, body["email"], body["password"])
    r = await services.auth.post(
        "/password/change",
        json={"current_password": "not-the-password-at-all", "new_password": NEW},
        headers=_bearer(tokens),
    )
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert "WWW-Authenticate" not in r.headers  # the token is fine; the password is not
    await _login(services, body["email"], body["password"])
    refused = await services.auth.post("/login", json={"email": body["email"], "password": NEW})
    assert refused.status_code == 401


async def test_a_new_password_breaking_the_policy_is_422(services: Services) -> None:
    body = await _account(services)
    tokens = await _login(services, body["email"], body["password"])
    local = body["email"].split("@")[0]
    for weak in ("short", "password123456", f"{local}-and-more-words"):
        r = await services.auth.post(
            "/password/change",
            json={"current_password": body["password"], "new_password": weak},
            headers=_bearer(tokens),
        )
        assert r.status_code == 422, weak
        assert {e["field"] for e in r.json()["errors"]} == {"new_password"}
        assert weak not in r.text
    await _login(services, body["email"], body["password"])


async def test_change_needs_a_user_token(services: Services) -> None:
    body = {"current_password": "whatever-it-is", "new_password": NEW}
    assert (await services.auth.post("/password/change", json=body)).status_code == 401
    bogus = {"Authorization": "Bearer not-a-token"}
    r = await services.auth.post("/password/change", json=body, headers=bogus)
    assert r.status_code == 401


@pytest.fixture
async def limited(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str]
) -> AsyncIterator[Services]:
    """Login limits on: 3 attempts per (account, network)."""
    async for s in start_services(
        tmp_path=tmp_path,
        redis_prefix=redis_prefix,
        urls=sqlite_urls,
        auth={"rate_limit_enabled": True, "login_account_network_limit": 3},
    ):
        yield s


async def test_wrong_current_passwords_count_toward_the_login_limits(limited: Services) -> None:
    """A stolen access token is no faster way to guess the password than the login form."""
    body = await _account(limited)
    tokens = await _login(limited, body["email"], body["password"])  # attempt 1, resets the count
    guesses = [
        await limited.auth.post(
            "/password/change",
            json={"current_password": f"guess-number-{i}", "new_password": NEW},
            headers=_bearer(tokens),
        )
        for i in range(4)
    ]
    assert [r.status_code for r in guesses] == [401, 401, 401, 429]
    assert "Retry-After" in guesses[-1].headers
    # The login form is locked for this account and network too.
    r = await limited.auth.post(
        "/login", json={"email": body["email"], "password": body["password"]}
    )
    assert r.status_code == 429
