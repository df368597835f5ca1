"""The core flows on a Redis Cluster and on a Sentinel group, each with replicas
and `REDIS_MIN_REPLICAS_ACK=1`: register, log in, refresh, reuse detection,
logout, and the user service refusing a logged-out session within a second
through its revocation feed (which must be live on both topologies)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from tests.conftest import Services, new_user, rejected_within_a_second, start_services
from tests.support.redis_servers import SentinelGroup
from tests.topologies.conftest import sentinel_settings

pytestmark = [pytest.mark.anyio, pytest.mark.topologies]


def _bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def _feed_live(s: Services) -> bool:
    feed = s.user_app.state.ctx.revocations
    for _ in range(100):
        if feed.live:
            return True
        await asyncio.sleep(0.02)
    return False


async def _login(s: Services) -> dict[str, str]:
    body = new_user()
    assert (await s.auth.post("/users", json=body)).status_code == 201
    r = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    assert r.status_code == 200, r.text
    tokens: dict[str, str] = r.json()
    return tokens


async def test_register_login_profile_and_logout_refused_within_a_second(
    topo_services: Services,
) -> None:
    s = topo_services
    assert await _feed_live(s), "the revocation feed never became live on this topology"
    tokens = await _login(s)
    me = await s.user.get("/users/me", headers=_bearer(tokens))
    assert me.status_code == 200
    assert (await s.auth.post("/logout", headers=_bearer(tokens))).status_code == 204
    assert await rejected_within_a_second(s.user, "/users/me", _bearer(tokens))
    # The refresh token of the logged-out session is dead too.
    r = await s.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401
    # The feed itself carried it: the user service holds the sid as revoked.
    assert s.user_app.state.ctx.revocations.live


async def test_refresh_rotates_and_reuse_revokes_the_session(topo_services: Services) -> None:
    s = topo_services
    assert await _feed_live(s)
    tokens = await _login(s)
    r = await s.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert (await s.user.get("/users/me", headers=_bearer(rotated))).status_code == 200
    # The successor is used, so the old token coming back is theft: the whole
    # session ends, and both services refuse it.
    r2 = await s.auth.post("/token/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert r2.status_code == 200
    reuse = await s.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert reuse.status_code == 401
    assert await rejected_within_a_second(s.user, "/users/me", _bearer(r2.json()))
    after = await s.auth.post("/token/refresh", json={"refresh_token": r2.json()["refresh_token"]})
    assert after.status_code == 401


async def test_sessions_list_and_revoke_one_across_slots(topo_services: Services) -> None:
    """A user's sessions live in different slots (one per sid); listing and
    revoking one of them work across those slots."""
    s = topo_services
    body = new_user()
    assert (await s.auth.post("/users", json=body)).status_code == 201
    logins = []
    for _ in range(3):
        r = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
        logins.append(r.json())
    listed = await s.auth.get("/sessions", headers=_bearer(logins[0]))
    assert listed.status_code == 200
    sids = [row["sid"] for row in listed.json()]
    assert len(sids) == 3
    other = next(sid for sid in sids if sid != sids[-1])
    victim = next(t for t in logins if t["refresh_token"].startswith(other))
    gone = await s.auth.delete(f"/sessions/{other}", headers=_bearer(logins[0]))
    assert gone.status_code == 204
    assert await rejected_within_a_second(s.user, "/users/me", _bearer(victim))
    assert len((await s.auth.get("/sessions", headers=_bearer(logins[0]))).json()) == 2


def _client_connections(group: SentinelGroup) -> int:
    """Connections from clients (not from other sentinels) on each sentinel, summed."""
    total = 0
    for sentinel in group.sentinels:
        with contextlib.closing(sentinel.client()) as probe:
            listed = probe.client_list()
        # Minus the probe itself; sentinels name their links to each other.
        total += sum(1 for c in listed if not c.get("name", "").startswith("sentinel-")) - 1
    return total


async def test_stopped_services_leave_no_connection_on_the_sentinels(
    tmp_path: Path, topo_prefix: str, sqlite_urls: dict[str, str], sentinel_group: SentinelGroup
) -> None:
    """Both services ask the sentinels where the master is (the user service's
    revocation feed too, from a client of its own); stopping them closes those
    connections. Left open, they stayed until the garbage collector found them,
    after their event loop had closed."""
    before = _client_connections(sentinel_group)
    async for s in start_services(
        tmp_path=tmp_path,
        redis_prefix=topo_prefix,
        urls=sqlite_urls,
        redis=sentinel_settings(sentinel_group),
    ):
        assert await _feed_live(s)
        tokens = await _login(s)
        assert (await s.user.get("/users/me", headers=_bearer(tokens))).status_code == 200
        assert _client_connections(sentinel_group) > before
    assert _client_connections(sentinel_group) == before
