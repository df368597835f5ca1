"""Refresh tokens go idle, and stay with the client they were issued to."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import Services, new_user, start_services
from tests.support.audit import AuditCapture

pytestmark = pytest.mark.anyio

IDLE = 1  # seconds: REFRESH_IDLE_TIMEOUT_SECONDS of these services


@pytest.fixture
async def idle_services(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str]
) -> AsyncIterator[Services]:
    async for s in start_services(
        tmp_path=tmp_path,
        redis_prefix=redis_prefix,
        urls=sqlite_urls,
        auth={"refresh_idle_timeout_seconds": IDLE},
    ):
        yield s


async def _login(s: Services) -> dict[str, str]:
    body = new_user()
    assert (await s.auth.post("/users", json=body)).status_code == 201
    r = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    assert r.status_code == 200, r.text
    tokens: dict[str, str] = r.json()
    return tokens


def _bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def test_an_active_session_keeps_rotating_past_the_idle_timeout(
    idle_services: Services,
) -> None:
    tokens = await _login(idle_services)
    for _ in range(4):  # 4 x 0.5 s: twice the idle timeout, never idle
        await asyncio.sleep(IDLE / 2)
        r = await idle_services.auth.post(
            "/token/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert r.status_code == 200, r.text
        tokens = r.json()


async def test_an_idle_refresh_token_is_refused_and_its_session_ends(
    idle_services: Services, audit: AuditCapture
) -> None:
    s = idle_services
    tokens = await _login(s)
    other = await _login(s)
    await asyncio.sleep(IDLE + 0.3)
    audit.clear()
    r = await s.auth.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"
    assert [(e["event"], e["reason"]) for e in audit.events] == [("token.refresh", "session_idle")]
    # The session is over, not only that token: its access token is refused.
    assert (await s.auth.get("/sessions", headers=_bearer(tokens))).status_code == 401
    r = await s.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401
    # Idle is per session: another one idle as long is refused alike, and a
    # fresh login works.
    r = await s.auth.post("/token/refresh", json={"refresh_token": other["refresh_token"]})
    assert r.status_code == 401
    fresh = await _login(s)
    r = await s.auth.post("/token/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert r.status_code == 200


async def test_a_refresh_token_works_only_for_the_client_it_was_issued_to(
    services: Services, audit: AuditCapture
) -> None:
    tokens = await _login(services)
    rt = tokens["refresh_token"]
    audit.clear()
    form = await services.auth.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": rt, "client_id": "other-app"},
    )
    as_json = await services.auth.post(
        "/token/refresh", json={"refresh_token": rt, "client_id": "other-app"}
    )
    # RFC 6749 §6: invalid_grant, and not a theft signal: nothing changed.
    assert form.status_code == 400
    assert form.json()["error"] == "invalid_grant"
    assert as_json.status_code == 401
    assert [(e["event"], e["reason"]) for e in audit.events] == [
        ("token.refresh", "wrong_client")
    ] * 2
    # The token still works for its own client, named or by default.
    named = await services.auth.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": rt, "client_id": "idp-web"},
    )
    assert named.status_code == 200, named.text
    r = await services.auth.post(
        "/token/refresh", json={"refresh_token": named.json()["refresh_token"]}
    )
    assert r.status_code == 200
    assert (await services.user.get("/users/me", headers=_bearer(r.json()))).status_code == 200
