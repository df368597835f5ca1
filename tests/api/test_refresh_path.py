"""The refresh path's round trips, and the owner a refresh token carries.

A refresh token is its session's sid, its owner's id, then the secret
(auth_service/stores/sessions.py, `new_refresh_token`), so a refresh reads
the account without first asking Redis whose token it is. The owner part is
the presenter's word until the rotation script checks it against the
record: these tests forge it, and replay tokens minted before tokens
carried it.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from typing import Any

import jwt
import pytest
import redis.asyncio as redis

from auth_service.stores.keys import OWNER_LENGTH, SID_LENGTH, SessionKeys
from auth_service.stores.sessions import SessionStore, hash_token, owner_hint
from shared.http.fields import email_key
from tests.conftest import REDIS_URL, Services, new_user

pytestmark = pytest.mark.anyio


async def _login(s: Services) -> tuple[str, dict[str, Any]]:
    body = new_user()
    r = await s.auth.post("/users", json=body)
    assert r.status_code == 201, r.text
    r = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    assert r.status_code == 200, r.text
    tokens: dict[str, Any] = r.json()
    return tokens["user_id"], tokens


async def _refresh(s: Services, token: str) -> Any:
    return await s.auth.post("/token/refresh", json={"refresh_token": token})


def _store(s: Services) -> SessionStore:
    store: SessionStore = s.auth_app.state.ctx.sessions
    return store


def _forge_owner(token: str, user_id: str) -> str:
    """`token` with another owner's id (a UUID's bytes in base64url) in its owner part."""
    part = base64.urlsafe_b64encode(uuid.UUID(user_id).bytes).rstrip(b"=").decode()
    assert len(part) == OWNER_LENGTH
    return token[:SID_LENGTH] + part + token[SID_LENGTH + OWNER_LENGTH :]


async def _commands_during(prefix: str, tag: str, action: Any) -> list[str]:
    """The commands naming this test's keys under hash tag `tag` that reached
    Redis while `action` ran (MONITOR on the real server: what went over the
    wire, not what was called). Background reads (the key-revocation poll)
    name no session."""
    client = redis.Redis.from_url(REDIS_URL)
    marker = f"{prefix}done-{uuid.uuid4().hex}"
    seen: list[str] = []
    started = asyncio.Event()

    async def listen() -> None:
        async with client.monitor() as monitor:
            started.set()
            while True:
                info = await monitor.next_command()
                command = str(info["command"])
                if marker in command:
                    return
                # What the scripts run inside Redis is listed too, as `lua`.
                if info.get("client_type") == "lua":
                    continue
                if prefix in command and f"{{{tag}}}" in command:
                    seen.append(command)

    task = asyncio.create_task(listen())
    await started.wait()
    await asyncio.sleep(0.2)  # MONITOR is registered once its reply came back
    try:
        await action()
        await client.exists(marker)
        await asyncio.wait_for(task, 10)
    finally:
        task.cancel()
        await client.aclose()
    return seen


async def test_a_refresh_token_names_its_session_and_owner(services: Services) -> None:
    user_id, tokens = await _login(services)
    rt = tokens["refresh_token"]
    assert owner_hint(rt) == user_id
    r = await _refresh(services, rt)
    assert r.status_code == 200, r.text
    successor = r.json()["refresh_token"]
    assert owner_hint(successor) == user_id
    assert successor[:SID_LENGTH] == rt[:SID_LENGTH]


async def test_a_refresh_asks_redis_once(services: Services, redis_prefix: str) -> None:
    """With the limiter off (as in this suite): the rotation script, nothing else."""
    _, tokens = await _login(services)
    result: dict[str, Any] = {}

    async def refresh() -> None:
        result["r"] = await _refresh(services, tokens["refresh_token"])

    sid = tokens["refresh_token"][:SID_LENGTH]
    commands = await _commands_during(redis_prefix, sid, refresh)
    assert result["r"].status_code == 200, result["r"].text
    assert len(commands) == 1, commands
    assert commands[0].startswith(("EVALSHA", "EVAL")), commands


async def test_a_forged_owner_makes_the_token_unknown_and_consumes_nothing(
    services: Services,
) -> None:
    victim_id, victim = await _login(services)
    other_id, _ = await _login(services)
    forged = _forge_owner(victim["refresh_token"], other_id)
    assert owner_hint(forged) == other_id
    r = await _refresh(services, forged)
    assert r.status_code == 401
    # The real token was never touched: it rotates, no reuse, no revocation.
    r = await _refresh(services, victim["refresh_token"])
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == victim_id


async def test_the_rotation_refuses_a_record_of_another_owner(services: Services) -> None:
    """The script's own check: a caller that vetted account B cannot rotate A's token."""
    victim_id, victim = await _login(services)
    other_id, _ = await _login(services)
    store = _store(services)
    refused = await store.rotate(
        victim["refresh_token"], ip="127.0.0.1", user_agent="t", owner=other_id
    )
    assert refused.outcome == "unknown"
    ok = await store.rotate(
        victim["refresh_token"], ip="127.0.0.1", user_agent="t", owner=victim_id
    )
    assert ok.outcome == "ok"
    assert owner_hint(ok.refresh_token) == victim_id


async def test_an_owner_with_no_active_account_revokes_only_its_own_sessions(
    services: Services,
) -> None:
    """A deleted or disabled account's refresh ends its session, as before; a
    forged owner naming no account must not end the session it names."""
    _, victim = await _login(services)
    forged = _forge_owner(victim["refresh_token"], str(uuid.uuid4()))
    r = await _refresh(services, forged)
    assert r.status_code == 401
    ok = await _refresh(services, victim["refresh_token"])
    assert ok.status_code == 200, ok.text
    bearer = {"Authorization": f"Bearer {ok.json()['access_token']}"}
    assert (await services.auth.get("/sessions", headers=bearer)).status_code == 200


async def test_a_token_minted_before_tokens_carried_their_owner_still_refreshes(
    services: Services, redis_prefix: str
) -> None:
    user_id, tokens = await _login(services)
    sid = tokens["refresh_token"][:SID_LENGTH]
    # The record such a token has: sid, then the secret, stored by its hash.
    legacy = sid + secrets.token_urlsafe(32)
    assert owner_hint(legacy) is None
    key = SessionKeys(redis_prefix).refresh(sid, hash_token(legacy))
    client = redis.Redis.from_url(REDIS_URL)
    try:
        await client.hset(
            key,
            mapping={"sid": sid, "user_id": user_id, "state": "active", "client_id": "idp-web"},
        )
        await client.expire(key, 600)
    finally:
        await client.aclose()
    r = await _refresh(services, legacy)
    assert r.status_code == 200, r.text
    assert owner_hint(r.json()["refresh_token"]) == user_id
    # Presented again, it is a rotated token like any other: reuse.
    again = await _refresh(services, legacy)
    assert again.status_code == 200  # the retry grace: the same successor
    assert again.json()["refresh_token"] == r.json()["refresh_token"]


async def test_the_account_is_read_at_every_refresh(services: Services) -> None:
    """Role changes apply at the next refresh; a deleted account mints no
    more tokens and its session ends (the read comes before the rotation)."""
    body = new_user()
    assert (await services.auth.post("/users", json=body)).status_code == 201
    r = await services.auth.post(
        "/login", json={"email": body["email"], "password": body["password"]}
    )
    tokens = r.json()
    identities = services.auth_app.state.ctx.identities
    await identities.set_roles(email_key(body["email"]), ("admin",))
    r = await _refresh(services, tokens["refresh_token"])
    assert r.status_code == 200, r.text
    claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
    assert claims["roles"] == ["admin"]
    successor = r.json()["refresh_token"]
    await identities.delete(uuid.UUID(tokens["user_id"]))
    assert (await _refresh(services, successor)).status_code == 401
    sid = successor[:SID_LENGTH]
    assert not await _store(services).revoke(sid)  # already ended by the refresh
    assert await _store(services).is_revoked(sid)
