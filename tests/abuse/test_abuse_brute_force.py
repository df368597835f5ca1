"""Brute force and credential stuffing against the auth service's limits.

Rate limits are on here (the suite's default is off), with the production
defaults except where a test needs a smaller number to stay fast. Clients
come from chosen addresses through httpx's ASGI transport, which sets the
peer the service sees (no X-Forwarded-For involved: the peer is untrusted).

Policy under test: docs/RATE_LIMITS.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import REDIS_URL, Services, new_user, start_services

pytestmark = pytest.mark.anyio

WRONG = "Wrong-password-1234"


def _limits(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "rate_limit_enabled": True,
        # Every client below is "one IP" unless it says otherwise; keep the
        # per-IP limit out of the way of the per-account ones under test.
        "login_ip_limit": 10_000,
        "register_ip_limit": 10_000,
    }
    base.update(overrides)
    return base


@pytest.fixture
async def limited(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str], request: pytest.FixtureRequest
) -> AsyncIterator[Services]:
    """Both services with rate limits on; `@pytest.mark.parametrize("limited", [{...}],
    indirect=True)` adjusts the auth settings."""
    overrides = getattr(request, "param", {})
    async for s in start_services(
        tmp_path=tmp_path, redis_prefix=redis_prefix, urls=sqlite_urls, auth=_limits(**overrides)
    ):
        yield s


def _client(s: Services, ip: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(s.auth_app, client=(ip, 40000)),
        base_url="http://auth-service",
    )


async def _register(s: Services) -> dict[str, str]:
    body = new_user()
    r = await s.auth.post("/users", json=body)
    assert r.status_code == 201, r.text
    return body


def _assert_429(r: httpx.Response, *, window: int) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert 1 <= int(r.headers["retry-after"]) <= window
    assert r.json()["type"] == "urn:idp:problem:rate-limited"


async def test_parallel_wrong_passwords_never_exceed_the_account_limit(
    limited: Services, caplog: pytest.LogCaptureFixture
) -> None:
    body = await _register(limited)
    limit = limited.auth_settings.login_account_network_limit
    window = limited.auth_settings.login_account_network_window_seconds
    caplog.set_level(logging.INFO, logger="audit")
    attempts = [
        limited.auth.post("/login", json={"email": body["email"], "password": f"{WRONG}-{i}"})
        for i in range(50)
    ]
    results = await asyncio.gather(*attempts)
    codes = [r.status_code for r in results]
    # Each 401 is one password actually checked: a guess. The counter is
    # taken before the hash, atomically in Redis, so a burst cannot overtake it.
    assert codes.count(401) <= limit, codes
    assert codes.count(401) + codes.count(429) == 50, codes
    for r in results:
        if r.status_code == 429:
            _assert_429(r, window=window)
    # The right password now gets the same 429: a locked-out guesser learns
    # nothing, even on a hit.
    right = await limited.auth.post(
        "/login", json={"email": body["email"], "password": body["password"]}
    )
    _assert_429(right, window=window)
    # Every refusal is on the audit trail, with the limit that refused it.
    refusals = [
        rec.audit
        for rec in caplog.records
        if getattr(rec, "audit", {}).get("event") == "rate_limited"
    ]
    assert len(refusals) >= codes.count(429)
    assert {r["reason"] for r in refusals} == {"login-account-net"}


async def test_oauth_token_endpoint_shares_the_login_limits(limited: Services) -> None:
    body = await _register(limited)
    limit = limited.auth_settings.login_account_network_limit
    form = {"grant_type": "password", "username": body["email"], "password": WRONG}
    results = await asyncio.gather(
        *(limited.auth.post("/token", data=form) for _ in range(limit + 5))
    )
    codes = [r.status_code for r in results]
    assert codes.count(400) <= limit, codes  # RFC 6749 invalid_grant: a guess
    assert codes.count(429) >= 5, codes
    refused = next(r for r in results if r.status_code == 429)
    assert refused.json()["error"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1


async def test_an_attacker_on_one_network_does_not_lock_out_the_real_user(
    limited: Services,
) -> None:
    body = await _register(limited)
    limit = limited.auth_settings.login_account_network_limit
    async with (
        _client(limited, "203.0.113.66") as attacker,
        _client(limited, "198.51.100.7") as user,
    ):
        for _ in range(limit + 3):
            await attacker.post("/login", json={"email": body["email"], "password": WRONG})
        locked = await attacker.post("/login", json={"email": body["email"], "password": WRONG})
        assert locked.status_code == 429
        # The account's owner, elsewhere, is not affected.
        ok = await user.post("/login", json={"email": body["email"], "password": body["password"]})
        assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    "limited",
    [{"login_account_network_limit": 3, "login_account_limit": 7}],
    indirect=True,
)
async def test_many_networks_hit_the_per_account_ceiling_which_is_time_boxed(
    limited: Services, redis_prefix: str
) -> None:
    body = await _register(limited)
    codes: list[int] = []
    # A distributed attacker: 3 networks x 3 guesses > the ceiling of 7.
    for n in range(3):
        async with _client(limited, f"192.0.2.{10 + n}") as bot:
            for _ in range(3):
                r = await bot.post("/login", json={"email": body["email"], "password": WRONG})
                codes.append(r.status_code)
    assert codes.count(401) == 7, codes
    async with _client(limited, "198.51.100.7") as user:
        r = await user.post("/login", json={"email": body["email"], "password": body["password"]})
    _assert_429(r, window=limited.auth_settings.login_account_window_seconds)
    # Time-boxed: the counter expires with its window; no state outlives it.
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{redis_prefix}rl:login-account*"))
        assert keys
        for key in keys:
            assert 0 < client.pttl(key) <= limited.auth_settings.login_account_window_seconds * 1000
        # When the window ends (simulated: the key expires), the owner gets in.
        client.delete(*keys)
    finally:
        client.close()
    async with _client(limited, "198.51.100.7") as user:
        r = await user.post("/login", json={"email": body["email"], "password": body["password"]})
    assert r.status_code == 200


async def test_a_successful_login_clears_the_failures(limited: Services) -> None:
    body = await _register(limited)
    limit = limited.auth_settings.login_account_network_limit
    for _ in range(limit - 1):
        r = await limited.auth.post("/login", json={"email": body["email"], "password": WRONG})
        assert r.status_code == 401
    ok = await limited.auth.post(
        "/login", json={"email": body["email"], "password": body["password"]}
    )
    assert ok.status_code == 200
    # A full fresh budget again (NIST 800-63B: disregard failures after a success).
    for _ in range(limit - 1):
        r = await limited.auth.post("/login", json={"email": body["email"], "password": WRONG})
        assert r.status_code == 401


async def test_ipv6_clients_are_grouped_by_slash_64(limited: Services) -> None:
    body = await _register(limited)
    limit = limited.auth_settings.login_account_network_limit
    # One host rotating through its /64 is one network.
    for i in range(limit):
        async with _client(limited, f"2001:db8:1:2::{i + 1:x}") as c:
            r = await c.post("/login", json={"email": body["email"], "password": WRONG})
            assert r.status_code == 401
    async with _client(limited, "2001:db8:1:2:ffff::1") as c:
        r = await c.post("/login", json={"email": body["email"], "password": WRONG})
        assert r.status_code == 429
    async with _client(limited, "2001:db8:1:3::1") as other:
        r = await other.post("/login", json={"email": body["email"], "password": body["password"]})
        assert r.status_code == 200


@pytest.mark.parametrize("limited", [{"login_ip_limit": 5}], indirect=True)
async def test_credential_stuffing_from_one_ip_is_limited_across_accounts(
    limited: Services,
) -> None:
    results = await asyncio.gather(
        *(
            limited.auth.post("/login", json={"email": f"victim{i}@example.com", "password": WRONG})
            for i in range(12)
        )
    )
    codes = [r.status_code for r in results]
    assert codes.count(401) == 5, codes
    assert codes.count(429) == 7, codes


@pytest.mark.parametrize("limited", [{"register_email_limit": 3}], indirect=True)
async def test_registration_is_limited_per_email_across_ips(limited: Services) -> None:
    body = new_user()
    codes = []
    for i in range(5):
        async with _client(limited, f"203.0.113.{i + 1}") as c:
            codes.append((await c.post("/users", json=body)).status_code)
    assert codes[:3] == [201, 409, 409], codes
    assert codes[3:] == [429, 429], codes
    # Letter case does not buy a fresh budget: the key is the case-folded email.
    async with _client(limited, "203.0.113.99") as c:
        r = await c.post("/users", json={**body, "email": body["email"].upper()})
    _assert_429(r, window=limited.auth_settings.register_email_window_seconds)


@pytest.mark.parametrize("limited", [{"register_ip_limit": 3}], indirect=True)
async def test_registration_is_limited_per_ip(limited: Services) -> None:
    results = [await limited.auth.post("/users", json=new_user()) for _ in range(5)]
    assert [r.status_code for r in results] == [201, 201, 201, 429, 429]
    _assert_429(results[-1], window=limited.auth_settings.register_ip_window_seconds)


@pytest.mark.parametrize("limited", [{"refresh_ip_limit": 3}], indirect=True)
async def test_refresh_is_limited_per_ip(limited: Services) -> None:
    results = [
        await limited.auth.post("/token/refresh", json={"refresh_token": "x" * 43})
        for _ in range(5)
    ]
    assert [r.status_code for r in results] == [401, 401, 401, 429, 429]
    _assert_429(results[-1], window=limited.auth_settings.refresh_ip_window_seconds)


def test_production_refuses_to_switch_limits_off() -> None:
    from auth_service.config import AuthSettings
    from shared.runtime.settings import ProductionConfigError

    with pytest.raises((ProductionConfigError, ValueError), match="RATE_LIMIT_ENABLED"):
        AuthSettings(
            env="production",
            rate_limit_enabled=False,
            docs_enabled=False,
            database_url="postgresql+asyncpg://u:Str0ng-secret@db/auth",
            redis_url="redis://:Str0ng-secret@redis:6379/0",
            issuer="https://idp.example.com",
            webauthn_rp_id="idp.example.com",
            webauthn_origins="https://idp.example.com",
        )
