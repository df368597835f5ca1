"""DELETE /totp: needs a second factor in the last 10 minutes (the passkey step-up).

Removing the account's last second factor turns MFA off and deletes the
recovery codes; with a passkey left, they stay. Removing the last passkey
with TOTP left is an ordinary removal.
"""

from __future__ import annotations

import time
import types
from typing import Any

import pytest

from tests.conftest import Services
from tests.support.passkey_flows import (
    AuditLog,
    audit_log,
    bearer,
    claims,
    mfa_login,
    passkey_account,
    password_account,
)
from tests.support.totp_flows import code, enrol_totp, pin_clock, start_login, totp_account

pytestmark = pytest.mark.anyio

STEP_UP = "urn:idp:problem:step-up-required"


@pytest.fixture
def audit(caplog: pytest.LogCaptureFixture) -> AuditLog:
    return audit_log(caplog)


async def _remove(s: Services, tokens: dict[str, Any]) -> Any:
    return await s.auth.delete("/totp", headers=bearer(tokens))


async def test_remove_with_a_recent_totp_login_turns_mfa_off(
    services: Services, audit: AuditLog
) -> None:
    clock = pin_clock(services)
    account, _, tokens, codes = await totp_account(services, clock)
    r = await _remove(services, tokens)
    assert r.status_code == 204, r.text
    event = audit.last("totp.removed")
    assert (event["outcome"], event["mfa_disabled"]) == ("success", True)
    off = audit.last("mfa.disabled")
    assert (off["method"], off["session_id"]) == ("totp", claims(tokens)["sid"])
    login = await services.auth.post(
        "/login", json={"email": account["email"], "password": account["password"]}
    )
    assert "access_token" in login.json()
    # The recovery codes went with the last second factor.
    remaining = await services.auth_app.state.ctx.mfa.remaining_codes(tokens["user_id"])
    assert remaining == 0
    assert codes
    # And TOTP can be enrolled afresh.
    assert (await services.auth.post("/totp/enrol", headers=bearer(tokens))).status_code == 200


async def test_remove_needs_a_recent_second_factor(
    services: Services, monkeypatch: pytest.MonkeyPatch, audit: AuditLog
) -> None:
    clock = pin_clock(services)
    account, tokens = await password_account(services)  # amr pwd: no second factor
    await enrol_totp(services, tokens, clock)
    r = await _remove(services, tokens)
    assert r.status_code == 403, r.text
    assert r.json()["type"] == STEP_UP
    assert 'error="insufficient_user_authentication"' in r.headers["www-authenticate"]
    assert audit.last("step_up")["reason"] == "no_recent_second_factor"
    # A TOTP login older than the step-up window is not recent either.
    import auth_service.services.authentication as authentication

    window = services.auth_settings.step_up_max_age_seconds
    monkeypatch.setattr(
        authentication, "time", types.SimpleNamespace(time=lambda: time.time() - window - 60)
    )
    clock.advance()
    old = await services.auth.post(
        "/login/mfa",
        json={
            "mfa_token": (await start_login(services, account))["mfa_token"],
            "totp": code(await _secret_of(services, tokens), clock),
        },
    )
    monkeypatch.undo()
    assert old.status_code == 200, old.text
    assert (await _remove(services, old.json())).status_code == 403
    # TOTP is still on.
    assert (await start_login(services, account))["methods"] == ["totp"]


async def _secret_of(s: Services, tokens: dict[str, Any]) -> str:
    import uuid

    ctx = s.auth_app.state.ctx
    uid = uuid.UUID(tokens["user_id"])
    row = await ctx.totp.totp.get(uid)
    return str(ctx.totp.box.open(uid, row.secret_sealed))


async def test_remove_without_totp_is_404(services: Services) -> None:
    _, _, tokens, _ = await passkey_account(services)
    r = await _remove(services, tokens)
    assert r.status_code == 404
    assert r.json()["type"] == "urn:idp:problem:totp-not-enabled"


async def test_remove_needs_a_user_token(services: Services) -> None:
    assert (await services.auth.delete("/totp")).status_code == 401


async def test_with_a_passkey_left_mfa_and_codes_stay(services: Services, audit: AuditLog) -> None:
    clock = pin_clock(services)
    account, authn, tokens, codes = await passkey_account(services)
    await enrol_totp(services, tokens, clock)
    r = await _remove(services, tokens)
    assert r.status_code == 204
    assert audit.last("totp.removed")["mfa_disabled"] is False
    assert not audit.records("mfa.disabled")
    pending = await start_login(services, account)
    assert pending["methods"] == ["webauthn"]
    used = await services.auth.post(
        "/login/mfa", json={"mfa_token": pending["mfa_token"], "recovery_code": codes[0]}
    )
    assert used.status_code == 200
    assert claims(await mfa_login(services, account, authn))["amr"] == ["pwd", "hwk"]


async def test_the_last_passkey_goes_freely_while_totp_stays(
    services: Services, audit: AuditLog
) -> None:
    clock = pin_clock(services)
    account, _, tokens, codes = await passkey_account(services)
    await enrol_totp(services, tokens, clock)
    listed = (await services.auth.get("/webauthn/credentials", headers=bearer(tokens))).json()
    # No ?confirm_last: the passkey is not the last second factor.
    r = await services.auth.delete(
        f"/webauthn/credentials/{listed[0]['id']}", headers=bearer(tokens)
    )
    assert r.status_code == 204, r.text
    assert audit.last("passkey.removed")["mfa_disabled"] is False
    assert not audit.records("mfa.disabled")
    pending = await start_login(services, account)
    assert pending["methods"] == ["totp"]
    assert pending["webauthn"] is None
    used = await services.auth.post(
        "/login/mfa", json={"mfa_token": pending["mfa_token"], "recovery_code": codes[1]}
    )
    assert used.status_code == 200, used.text


async def test_the_last_passkey_going_audits_mfa_disabled(
    services: Services, audit: AuditLog
) -> None:
    _, _, tokens, _ = await passkey_account(services)
    listed = (await services.auth.get("/webauthn/credentials", headers=bearer(tokens))).json()
    r = await services.auth.delete(
        f"/webauthn/credentials/{listed[0]['id']}?confirm_last=true", headers=bearer(tokens)
    )
    assert r.status_code == 204
    assert audit.last("mfa.disabled")["method"] == "passkey"


async def test_the_whole_lifecycle_on_each_database(services_any_db: Services) -> None:
    """Enrol twice (the second replaces the first), confirm, log in, remove,
    enrol again: every repository statement on SQLite and PostgreSQL."""
    s = services_any_db
    clock = pin_clock(s)
    account, tokens = await password_account(s)
    first = (await s.auth.post("/totp/enrol", headers=bearer(tokens))).json()["secret"]
    secret, confirmed = await enrol_totp(s, tokens, clock)
    assert secret != first
    assert confirmed["recovery_codes"]
    clock.advance()
    pending = await start_login(s, account)
    r = await s.auth.post(
        "/login/mfa", json={"mfa_token": pending["mfa_token"], "totp": code(secret, clock)}
    )
    assert r.status_code == 200, r.text
    assert (await _remove(s, r.json())).status_code == 204
    assert await s.auth_app.state.ctx.mfa.remaining_codes(tokens["user_id"]) == 0
    assert (await s.auth.post("/totp/enrol", headers=bearer(r.json()))).status_code == 200
