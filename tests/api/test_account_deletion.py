"""DELETE /users/me (auth service): the account and everything it owns, in both services."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from auth_service.models import ACCOUNT_OWNED, ACCOUNT_RETAINED
from shared.audit.store import AUDIT_TABLE
from tests.conftest import REDIS_URL, Services, rejected_within_a_second, start_services
from tests.support.audit import AuditCapture
from tests.support.passkey_flows import bearer, enrol, password_account
from tests.support.soft_authenticator import SoftAuthenticator

pytestmark = pytest.mark.anyio


async def _login(s: Services, account: dict[str, str]) -> dict[str, Any]:
    r = await s.auth.post(
        "/login", json={"email": account["email"], "password": account["password"]}
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _delete(s: Services, tokens: dict[str, Any], password: str) -> Any:
    return await s.auth.request(
        "DELETE", "/users/me", json={"password": password}, headers=bearer(tokens)
    )


async def _owned_rows(s: Services, user_id: str) -> dict[str, int]:
    """Rows naming `user_id` in every account-owned table, read straight from the database."""
    counts = {}
    async with s.auth_app.state.ctx.engine.connect() as conn:
        for table, owner in ACCOUNT_OWNED:
            rows = await conn.execute(select(table).where(table.c[owner] == uuid.UUID(user_id)))
            counts[table.name] = len(rows.all())
    return counts


async def _redis_mentions(prefix: str, *needles: str) -> list[str]:
    """Keys under `prefix` whose name or value holds one of `needles`."""
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    found = []
    try:
        async for key in client.scan_iter(match=f"{prefix}*"):
            kind = await client.type(key)
            if kind == "hash":
                values = list((await client.hgetall(key)).values())
            elif kind == "string":
                values = [await client.get(key) or ""]
            elif kind == "set":
                values = list(await client.smembers(key))
            else:
                values = []
            if any(n in text for n in needles for text in (key, *values)):
                found.append(key)
    finally:
        await client.aclose()
    return found


async def _audit_rows(app: Any) -> list[dict[str, Any]]:
    await app.state.obs.flush_audit()
    async with app.state.ctx.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(AUDIT_TABLE))]


async def test_deletion_erases_the_account_everywhere(
    services_any_db: Services, audit: AuditCapture, redis_prefix: str
) -> None:
    s = services_any_db
    account, tokens = await password_account(s)
    user_id = tokens["user_id"]
    # A passkey turns MFA on and brings recovery codes: rows in every table.
    await enrol(s, tokens, SoftAuthenticator(), label="Laptop")
    other = await s.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert other.status_code == 200
    tokens = other.json()
    reset_tokens = s.auth_app.state.ctx.deletion.one_time_tokens
    link = await reset_tokens[0].issue(user_id)
    assert all(n > 0 for n in (await _owned_rows(s, user_id)).values())
    # Sessions and both refresh-token records (the rotated one and its successor).
    assert len(await _redis_mentions(redis_prefix, user_id)) >= 4

    r = await _delete(s, tokens, account["password"])
    assert r.status_code == 204, r.text

    # Identity, hash, passkeys, recovery codes: no row left in any table.
    assert set((await _owned_rows(s, user_id)).values()) == {0}
    # The profile is gone from the user service.
    assert await s.user_app.state.ctx.profiles.get(uuid.UUID(user_id)) is None
    # The access token stops working at the user service within a second,
    # and at once here; the refresh token is dead.
    assert await rejected_within_a_second(s.user, "/users/me", bearer(tokens))
    assert (await s.auth.get("/sessions", headers=bearer(tokens))).status_code == 401
    refresh = await s.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401
    # The password logs in no more, and the email is free for a new account.
    login = await s.auth.post(
        "/login", json={"email": account["email"], "password": account["password"]}
    )
    assert login.status_code == 401
    assert (await s.auth.post("/users", json=account)).status_code == 201
    # A reset link mailed before the deletion is void.
    assert await reset_tokens[0].peek(link) is None
    # Nothing in Redis names the account any more: no session, no refresh
    # token record (used or live), no link.
    assert not await _redis_mentions(redis_prefix, user_id, account["email"])

    (event,) = audit.named("account.delete")
    assert event["outcome"] == "success"
    assert event["user_id"] == user_id
    assert event["sessions_revoked"] == 1
    # The trails of both services keep the bare id, never the email or the name.
    for app in (s.auth_app, s.user_app):
        rows = await _audit_rows(app)
        text = json.dumps(rows, default=str)
        assert account["email"] not in text
        assert account["email"].split("@")[0] not in text
        assert account["name"] not in text
    auth_rows = await _audit_rows(s.auth_app)
    assert any(r["user_id"] == user_id and r["event"] == "account.delete" for r in auth_rows)


async def test_wrong_password_is_401_and_changes_nothing(
    services: Services, audit: AuditCapture
) -> None:
    account, tokens = await password_account(services)
    r = await _delete(services, tokens, "not-the-password-at-all")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert "WWW-Authenticate" not in r.headers  # the token is fine; the password is not
    assert r.json()["detail"] == "The password is not correct."
    assert (await services.user.get("/users/me", headers=bearer(tokens))).status_code == 200
    await _login(services, account)
    (event,) = audit.named("account.delete")
    assert (event["outcome"], event["reason"]) == ("failure", "invalid_credentials")


@pytest.mark.parametrize(
    "body",
    [{}, {"password": ""}, {"password": "x" * 1025}, {"password": "ok", "email": "a@b.c"}, []],
)
async def test_a_malformed_body_is_422_and_changes_nothing(
    services: Services, body: object
) -> None:
    _account, tokens = await password_account(services)
    r = await services.auth.request("DELETE", "/users/me", json=body, headers=bearer(tokens))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert (await services.user.get("/users/me", headers=bearer(tokens))).status_code == 200


async def test_deletion_needs_a_user_token(services: Services) -> None:
    r = await services.auth.request("DELETE", "/users/me", json={"password": "whatever-it-is"})
    assert r.status_code == 401
    service = services.auth_app.state.ctx.issuer.service_token()
    r = await services.auth.request(
        "DELETE",
        "/users/me",
        json={"password": "whatever-it-is"},
        headers={"Authorization": f"Bearer {service}"},
    )
    assert r.status_code == 401


async def test_a_deleted_accounts_token_cannot_delete_again(services: Services) -> None:
    account, tokens = await password_account(services)
    assert (await _delete(services, tokens, account["password"])).status_code == 204
    assert (await _delete(services, tokens, account["password"])).status_code == 401


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


async def test_wrong_passwords_count_toward_the_login_limits(limited: Services) -> None:
    """A stolen access token is no faster way to guess the password than the login form."""
    account, tokens = await password_account(limited)  # attempt 1, resets the count
    guesses = [await _delete(limited, tokens, f"guess-number-{i}") for i in range(4)]
    assert [r.status_code for r in guesses] == [401, 401, 401, 429]
    assert "Retry-After" in guesses[-1].headers
    # Even the right password waits now, and the account is still there.
    assert (await _delete(limited, tokens, account["password"])).status_code == 429
    assert (await limited.user.get("/users/me", headers=bearer(tokens))).status_code == 200


async def test_user_service_refusing_is_503_and_changes_nothing(services: Services) -> None:
    """The profile goes first: if the user service cannot delete it, nothing changed."""
    account, tokens = await password_account(services)
    user_id = tokens["user_id"]
    # The user service refuses the auth service's calls: it now trusts another client.
    # (The user service being down altogether: tests/e2e/test_cross_service.py.)
    ctx = services.user_app.state.ctx
    trusted = ctx.settings
    ctx.settings = trusted.model_copy(update={"service_client_id": "someone-else"})
    r = await _delete(services, tokens, account["password"])
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["Retry-After"]
    assert (await _owned_rows(services, user_id))["identities"] == 1
    assert (await services.auth.get("/sessions", headers=bearer(tokens))).status_code == 200
    await _login(services, account)
    ctx.settings = trusted
    assert (await services.user.get("/users/me", headers=bearer(tokens))).status_code == 200
    # The retry finishes it.
    assert (await _delete(services, tokens, account["password"])).status_code == 204


async def test_internal_profile_deletion_needs_its_own_scope(services: Services) -> None:
    _account, tokens = await password_account(services)
    path = f"/internal/profiles/{tokens['user_id']}"
    issuer = services.auth_app.state.ctx.issuer
    for token, status in [
        (tokens["access_token"], 403),  # a user token, whatever it claims
        (issuer.service_token("profiles:write"), 403),  # the registration token
        (issuer.service_token("profiles:read"), 403),
    ]:
        r = await services.user.delete(path, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == status
    assert (await services.user.get("/users/me", headers=bearer(tokens))).status_code == 200
    deleter = {"Authorization": f"Bearer {issuer.service_token('profiles:delete')}"}
    assert (await services.user.delete(path, headers=deleter)).status_code == 204
    assert (await services.user.get("/users/me", headers=bearer(tokens))).status_code == 404
    # Idempotent: gone already is what was asked for.
    assert (await services.user.delete(path, headers=deleter)).status_code == 204
    bad = await services.user.delete("/internal/profiles/not-a-uuid", headers=deleter)
    assert bad.status_code == 422


def test_every_table_with_an_owner_is_erased_or_deliberately_kept() -> None:
    """A new table holding a `user_id` (a TOTP secret, say) must join ACCOUNT_OWNED."""
    from auth_service.models import AUTH_TABLES

    owned = {table.name for table, _ in ACCOUNT_OWNED}
    kept = {table.name for table in ACCOUNT_RETAINED}
    for table in AUTH_TABLES:
        names_owner = "user_id" in table.c or any(
            fk.column.table.name == "identities" for fk in table.foreign_keys
        )
        if names_owner or table.name == "identities":
            assert table.name in owned | kept, f"{table.name} outlives a deleted account"
    assert kept == {"audit_events"}
    # The identity goes last: rows referencing it go before it.
    assert ACCOUNT_OWNED[-1][0].name == "identities"
