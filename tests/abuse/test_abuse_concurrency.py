"""Races that must not leave a live session behind.

Logout (or revoking a session from another device) racing a refresh of the
same session: whichever Lua script Redis runs first, the end state has no
usable token of that session. At most one successor may be minted, and it
dies with the logout. Repeated rounds, because a race that loses once in ten
is still a bug.
"""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest
import redis

from tests.conftest import REDIS_URL, Services, new_user

pytestmark = pytest.mark.anyio

ROUNDS = 5


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _login(s: Services, body: dict[str, str]) -> dict[str, str]:
    r = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    assert r.status_code == 200, r.text
    tokens: dict[str, str] = r.json()
    return tokens


async def _assert_session_dead(
    s: Services, sid: str, access_tokens: list[str], refresh_tokens: list[str], prefix: str
) -> None:
    for token in access_tokens:
        assert (await s.user.get("/users/me", headers=_bearer(token))).status_code == 401
        assert (await s.auth.get("/sessions", headers=_bearer(token))).status_code == 401
    for token in refresh_tokens:
        r = await s.auth.post("/token/refresh", json={"refresh_token": token})
        assert r.status_code == 401, r.text
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert not client.exists(f"{prefix}sess:{{{sid}}}")
        assert client.exists(f"{prefix}revoked:sid:{{{sid}}}")
    finally:
        client.close()


async def _race(
    s: Services, end_session: httpx.Request, refresh_token: str, refreshers: int
) -> list[httpx.Response]:
    refreshes = [
        s.auth.post("/token/refresh", json={"refresh_token": refresh_token})
        for _ in range(refreshers)
    ]
    calls = [s.auth.send(end_session), *refreshes]
    random.shuffle(calls)  # no fixed winner
    return list(await asyncio.gather(*calls))


@pytest.mark.parametrize("refreshers", [1, 3])
async def test_logout_racing_refresh_never_leaves_a_live_session(
    services: Services, redis_prefix: str, refreshers: int
) -> None:
    body = new_user()
    assert (await services.auth.post("/users", json=body)).status_code == 201
    for _ in range(ROUNDS):
        tokens = await _login(services, body)
        sid = (await services.auth.get("/sessions", headers=_bearer(tokens["access_token"]))).json()
        sid = next(x["sid"] for x in sid if x["current"])
        logout = services.auth.build_request(
            "POST", "/logout", headers=_bearer(tokens["access_token"])
        )
        results = await _race(services, logout, tokens["refresh_token"], refreshers)
        winners = [r.json() for r in results if r.request.url.path == "/token/refresh"
                   and r.status_code == 200]  # fmt: skip
        # At most one successor: refreshers that lose the race inside the
        # retry grace get that same one back, never a second branch.
        assert len({w["refresh_token"] for w in winners}) <= 1, [r.status_code for r in results]
        # 401 too: with several refreshers, a loser's reuse may revoke the
        # session first (reuse detection), and the logout then finds it gone.
        logout_status = next(r.status_code for r in results if r.request.url.path == "/logout")
        assert logout_status in (204, 401)
        await _assert_session_dead(
            services,
            sid,
            [tokens["access_token"], *(w["access_token"] for w in winners)],
            [tokens["refresh_token"], *(w["refresh_token"] for w in winners)],
            redis_prefix,
        )
    # The account itself is fine: a new login works and lists one session.
    fresh = await _login(services, body)
    listed = (await services.auth.get("/sessions", headers=_bearer(fresh["access_token"]))).json()
    assert [x["current"] for x in listed] == [True]


async def test_revoking_a_session_from_another_device_racing_its_refresh(
    services: Services, redis_prefix: str
) -> None:
    body = new_user()
    assert (await services.auth.post("/users", json=body)).status_code == 201
    laptop = await _login(services, body)
    for _ in range(ROUNDS):
        phone = await _login(services, body)
        sessions = await services.auth.get("/sessions", headers=_bearer(phone["access_token"]))
        phone_sid = next(x["sid"] for x in sessions.json() if x["current"])
        revoke = services.auth.build_request(
            "DELETE", f"/sessions/{phone_sid}", headers=_bearer(laptop["access_token"])
        )
        results = await _race(services, revoke, phone["refresh_token"], 2)
        # 404 when a losing refresher's reuse detection revoked it first.
        assert next(r.status_code for r in results if r.request.method == "DELETE") in (204, 404)
        winners = [r.json() for r in results if r.request.method == "POST" and r.status_code == 200]
        await _assert_session_dead(
            services,
            phone_sid,
            [phone["access_token"], *(w["access_token"] for w in winners)],
            [phone["refresh_token"], *(w["refresh_token"] for w in winners)],
            redis_prefix,
        )
    # The revoking device keeps its own session.
    assert (
        await services.user.get("/users/me", headers=_bearer(laptop["access_token"]))
    ).status_code == 200
