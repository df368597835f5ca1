"""POST /login -> POST /login/mfa {mfa_token, totp}: the TOTP second step.

A code works once (RFC 6238 §5.2), and wrong codes are limited per account:
a right password resets the login counters, so without the TOTP limits an
attacker holding the password would get one code guess per login, forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Services, start_services
from tests.support.passkey_flows import (
    AuditLog,
    audit_log,
    bearer,
    claims,
    enrol,
    password_account,
)
from tests.support.soft_authenticator import SoftAuthenticator
from tests.support.totp_flows import (
    code,
    enrol_totp,
    pin_clock,
    start_login,
    totp_account,
    totp_login,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def audit(caplog: pytest.LogCaptureFixture) -> AuditLog:
    return audit_log(caplog)


def _wrong(secret_code: str, n: int = 1) -> str:
    return f"{(int(secret_code) + n) % 1_000_000:06d}"


async def test_login_asks_for_the_methods_the_account_has(services: Services) -> None:
    clock = pin_clock(services)
    account, tokens = await password_account(services)
    await enrol_totp(services, tokens, clock)
    body = await start_login(services, account)
    assert set(body) == {"mfa_required", "mfa_token", "expires_in", "methods", "webauthn"}
    assert body["methods"] == ["totp"]
    assert body["webauthn"] is None  # no passkey: no request options


async def test_password_and_code_give_pwd_otp(services: Services, audit: AuditLog) -> None:
    clock = pin_clock(services)
    account, secret, tokens, _ = await totp_account(services, clock)
    c = claims(tokens)
    assert c["amr"] == ["pwd", "otp"]
    event = audit.last("mfa.verify")
    assert (event["outcome"], event["method"]) == ("success", "totp")
    assert event["user_id"] == tokens["user_id"]
    assert audit.last("mfa.challenge")["methods"] == "totp"
    me = await services.user.get(f"/users/{tokens['user_id']}", headers=bearer(tokens))
    assert me.status_code == 200
    # Spaces as apps show them ("123 456") are fine.
    clock.advance()
    spaced = code(secret, clock)
    r = await totp_login(services, account, f"{spaced[:3]} {spaced[3:]}")
    assert r.status_code == 200, r.text


async def test_a_code_is_accepted_once(services: Services, audit: AuditLog) -> None:
    clock = pin_clock(services)
    account, secret, _, _ = await totp_account(services, clock)
    # totp_account logged in with this step's code: the same code again is refused.
    replay = await totp_login(services, account, code(secret, clock))
    assert replay.status_code == 401, replay.text
    assert "access_token" not in replay.json()
    event = audit.last("mfa.verify")
    assert (event["outcome"], event["reason"], event["method"]) == (
        "failure",
        "totp_code_replayed",
        "totp",
    )
    # So is an earlier step's code still inside the drift window.
    earlier = await totp_login(services, account, code(secret, clock, -1))
    assert earlier.status_code == 401
    # The next step's code works.
    assert (await totp_login(services, account, code(secret, clock, 1))).status_code == 200


async def test_the_confirming_code_cannot_log_in(services: Services) -> None:
    clock = pin_clock(services)
    account, tokens = await password_account(services)
    secret, _ = await enrol_totp(services, tokens, clock)
    r = await totp_login(services, account, code(secret, clock))
    assert r.status_code == 401


async def test_racing_logins_with_one_code_get_one_session(services_any_db: Services) -> None:
    # On SQLite and PostgreSQL: the conditional UPDATE is the whole guarantee.
    services = services_any_db
    clock = pin_clock(services)
    account, secret, _, _ = await totp_account(services, clock)
    clock.advance()
    pendings = [await start_login(services, account) for _ in range(5)]
    results = await asyncio.gather(
        *(
            services.auth.post(
                "/login/mfa", json={"mfa_token": p["mfa_token"], "totp": code(secret, clock)}
            )
            for p in pendings
        )
    )
    assert sorted(r.status_code for r in results) == [200, 401, 401, 401, 401]


async def test_codes_outside_the_window_are_refused(services: Services, audit: AuditLog) -> None:
    clock = pin_clock(services)
    account, secret, _, _ = await totp_account(services, clock)
    clock.advance(5)
    for offset in (-2, 2):
        r = await totp_login(services, account, code(secret, clock, offset))
        assert r.status_code == 401
        assert audit.last("mfa.verify")["reason"] == "totp_code_invalid"
    # One step either side is accepted (clock drift, RFC 6238 §5.2).
    assert (await totp_login(services, account, code(secret, clock, -1))).status_code == 200


async def test_the_mfa_token_is_spent_by_a_wrong_code(services: Services) -> None:
    clock = pin_clock(services)
    account, secret, _, _ = await totp_account(services, clock)
    clock.advance()
    pending = await start_login(services, account)
    right = code(secret, clock)
    first = await services.auth.post(
        "/login/mfa", json={"mfa_token": pending["mfa_token"], "totp": _wrong(right)}
    )
    assert first.status_code == 401
    again = await services.auth.post(
        "/login/mfa", json={"mfa_token": pending["mfa_token"], "totp": right}
    )
    assert again.status_code == 401
    assert again.json()["type"] == "urn:idp:problem:mfa-token-invalid"


async def test_a_totp_field_on_a_passkey_only_account_is_refused(services: Services) -> None:
    account, tokens = await password_account(services)
    await enrol(services, tokens, SoftAuthenticator())
    pending = await start_login(services, account)
    assert pending["methods"] == ["webauthn"]
    r = await services.auth.post(
        "/login/mfa", json={"mfa_token": pending["mfa_token"], "totp": "123456"}
    )
    assert r.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"totp": "12345"},
        {"totp": "abcdef"},
        {"totp": "123456", "recovery_code": "AAAA"},
        {"totp": 123456},
    ],
)
async def test_malformed_totp_requests_are_422(services: Services, body: dict[str, Any]) -> None:
    r = await services.auth.post("/login/mfa", json={"mfa_token": "x" * 43, **body})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"


async def test_a_recovery_code_completes_a_totp_login(services: Services) -> None:
    clock = pin_clock(services)
    account, _, _, codes = await totp_account(services, clock)
    pending = await start_login(services, account)
    r = await services.auth.post(
        "/login/mfa", json={"mfa_token": pending["mfa_token"], "recovery_code": codes[0]}
    )
    assert r.status_code == 200, r.text
    assert claims(r.json())["amr"] == ["pwd", "otp"]


async def test_oauth_password_grant_refuses_totp_accounts(services: Services) -> None:
    clock = pin_clock(services)
    account, _, _, _ = await totp_account(services, clock)
    r = await services.auth.post(
        "/token",
        data={
            "grant_type": "password",
            "username": account["email"],
            "password": account["password"],
        },
    )
    assert r.status_code == 400
    assert "access_token" not in r.json()


# --- brute force --------------------------------------------------------------


@pytest.fixture
async def limited(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str]
) -> AsyncIterator[Services]:
    """Rate limits on, with the shipped TOTP numbers."""
    async for s in start_services(
        tmp_path=tmp_path,
        redis_prefix=redis_prefix,
        urls=sqlite_urls,
        auth={"rate_limit_enabled": True},
    ):
        yield s


async def test_wrong_codes_are_limited_per_account_though_the_password_is_right(
    limited: Services, audit: AuditLog
) -> None:
    """The attacker has the password: each login resets the login counters, and
    still the sixth code within 15 minutes is refused, the right one included."""
    clock = pin_clock(limited)
    account, secret, _, _ = await totp_account(limited, clock)
    clock.advance()
    right = code(secret, clock)
    limit = limited.auth_settings.totp_account_limit
    for i in range(limit):
        r = await totp_login(limited, account, _wrong(right, i + 1))
        assert r.status_code == 401, r.text
    refused = await totp_login(limited, account, right)
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) > 0
    event = audit.last("rate_limited")
    assert (event["reason"], event["action"]) == ("totp-account", "mfa")
    # The window ending lets the owner in again (the counter's key expires).
    redis = limited.auth_app.state.ctx.redis
    prefix = limited.auth_settings.redis_prefix
    await redis.delete(f"{prefix}rl:totp-account:{account_id(audit)}")
    ok = await totp_login(limited, account, right)
    assert ok.status_code == 200, ok.text


def account_id(audit: AuditLog) -> str:
    user_id: str = audit.last("mfa.verify")["user_id"]
    return user_id


async def test_a_right_code_resets_the_run_of_failures(limited: Services) -> None:
    clock = pin_clock(limited)
    account, secret, _, _ = await totp_account(limited, clock)
    limit = limited.auth_settings.totp_account_limit
    for _ in range(3):
        clock.advance()
        right = code(secret, clock)
        for i in range(limit - 1):
            assert (await totp_login(limited, account, _wrong(right, i + 1))).status_code == 401
        assert (await totp_login(limited, account, right)).status_code == 200


async def test_the_daily_ceiling_holds_across_short_windows(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str]
) -> None:
    settings = {
        "rate_limit_enabled": True,
        "totp_account_limit": 2,
        "totp_account_window_seconds": 1,
        "totp_account_daily_limit": 4,
    }
    async for s in start_services(
        tmp_path=tmp_path, redis_prefix=redis_prefix, urls=sqlite_urls, auth=settings
    ):
        clock = pin_clock(s)
        account, secret, _, _ = await totp_account(s, clock)
        clock.advance()
        right = code(secret, clock)
        statuses = []
        for i in range(3):
            for j in range(2):
                statuses.append(
                    (await totp_login(s, account, _wrong(right, 2 * i + j + 1))).status_code
                )
            await asyncio.sleep(1.1)  # the short window ends
        assert statuses == [401, 401, 401, 401, 429, 429]
        assert (await totp_login(s, account, right)).status_code == 429


async def test_a_secret_sealed_under_another_key_is_a_401_not_a_500(
    services: Services, audit: AuditLog
) -> None:
    """TOTP_ENCRYPTION_KEY replaced without re-enrolment: the login fails closed."""
    import secrets

    from auth_service.keys.secret_box import SecretBox

    clock = pin_clock(services)
    account, secret, _, _ = await totp_account(services, clock)
    services.auth_app.state.ctx.totp.box = SecretBox(secrets.token_bytes(32))
    clock.advance()
    r = await totp_login(services, account, code(secret, clock))
    assert r.status_code == 401, r.text
    assert audit.last("mfa.verify")["reason"] == "totp_secret_unreadable"
