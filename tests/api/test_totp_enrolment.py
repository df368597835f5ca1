"""POST /totp/enrol and POST /totp/confirm: TOTP (RFC 6238) as a second factor.

Enrolment is guarded like the first passkey: a stolen session (a refreshed
old login) cannot put the thief's authenticator app on the account.
"""

from __future__ import annotations

import sqlite3
import time
import types
import urllib.parse
from pathlib import Path
from typing import Any

import pyotp
import pytest

from tests.conftest import Services
from tests.support.passkey_flows import (
    AuditLog,
    audit_log,
    bearer,
    claims,
    enrol,
    passkey_account,
    password_account,
)
from tests.support.soft_authenticator import SoftAuthenticator
from tests.support.totp_flows import code, enrol_totp, pin_clock

pytestmark = pytest.mark.anyio

REAUTH = "urn:idp:problem:reauthentication-required"
STEP_UP = "urn:idp:problem:step-up-required"


@pytest.fixture
def audit(caplog: pytest.LogCaptureFixture) -> AuditLog:
    return audit_log(caplog)


async def _enrol(s: Services, tokens: dict[str, Any], body: dict[str, Any] | None = None) -> Any:
    return await s.auth.post("/totp/enrol", json=body, headers=bearer(tokens))


async def _stolen_session(
    s: Services, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, str], dict[str, Any]]:
    """A password login an hour ago, refreshed now: what a refresh-token thief holds."""
    import auth_service.services.authentication as authentication

    monkeypatch.setattr(
        authentication, "time", types.SimpleNamespace(time=lambda: time.time() - 3600)
    )
    account, tokens = await password_account(s)
    monkeypatch.undo()
    r = await s.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200, r.text
    return account, r.json()


# --- enrol --------------------------------------------------------------------


async def test_enrol_answers_an_rfc6238_secret_and_uri(services: Services, audit: AuditLog) -> None:
    account, tokens = await password_account(services)
    r = await _enrol(services, tokens)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert set(body) == {"secret", "otpauth_uri", "qr_svg"}
    assert len(body["secret"]) == 32  # 160 bits of base32 (RFC 4226 §4 R6)
    uri = urllib.parse.urlsplit(body["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    query = urllib.parse.parse_qs(uri.query)
    assert query["secret"] == [body["secret"]]
    assert query["issuer"] == ["Identity Platform"]
    assert urllib.parse.unquote(uri.path) == f"/Identity Platform:{account['email']}"
    # Parsed the way an authenticator app does: SHA-1, 6 digits, 30 s.
    parsed = pyotp.parse_uri(body["otpauth_uri"])
    assert isinstance(parsed, pyotp.TOTP)
    assert (parsed.digits, parsed.interval, parsed.digest().name) == (6, 30, "sha1")
    assert body["qr_svg"].startswith("data:image/svg+xml")
    event = audit.last("totp.enrol")
    assert (event["outcome"], event["user_id"]) == ("success", claims(tokens)["sub"])
    assert body["secret"] not in str(audit.records())


async def test_enrolment_alone_changes_nothing_about_login(services: Services) -> None:
    account, tokens = await password_account(services)
    assert (await _enrol(services, tokens)).status_code == 200
    r = await services.auth.post(
        "/login", json={"email": account["email"], "password": account["password"]}
    )
    assert "access_token" in r.json()  # not a second factor until confirmed


async def test_enrol_again_replaces_an_unconfirmed_secret(services: Services) -> None:
    clock = pin_clock(services)
    _, tokens = await password_account(services)
    first = (await _enrol(services, tokens)).json()["secret"]
    second = (await _enrol(services, tokens)).json()["secret"]
    assert first != second
    stale = await services.auth.post(
        "/totp/confirm", json={"code": code(first, clock)}, headers=bearer(tokens)
    )
    assert stale.status_code == 400
    ok = await services.auth.post(
        "/totp/confirm", json={"code": code(second, clock)}, headers=bearer(tokens)
    )
    assert ok.status_code == 201, ok.text


async def test_enrol_when_totp_is_on_is_409(services: Services) -> None:
    clock = pin_clock(services)
    _, tokens = await password_account(services)
    await enrol_totp(services, tokens, clock)
    r = await _enrol(services, tokens)
    assert r.status_code == 409, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:idp:problem:totp-enabled"


async def test_enrol_needs_a_user_token(services: Services) -> None:
    r = await services.auth.post("/totp/enrol")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"


async def test_a_stolen_session_cannot_enrol_the_first_second_factor(
    services: Services, monkeypatch: pytest.MonkeyPatch, audit: AuditLog
) -> None:
    _, tokens = await _stolen_session(services, monkeypatch)
    r = await _enrol(services, tokens)
    assert r.status_code == 403, r.text
    assert r.json()["type"] == REAUTH
    assert 'error="insufficient_user_authentication"' in r.headers["www-authenticate"]
    event = audit.last("step_up")
    assert (event["outcome"], event["reason"]) == ("denied", "no_recent_login")


async def test_the_password_again_lets_an_old_session_enrol(
    services: Services, monkeypatch: pytest.MonkeyPatch, audit: AuditLog
) -> None:
    account, tokens = await _stolen_session(services, monkeypatch)
    wrong = await _enrol(services, tokens, {"password": "Not-the-password-42"})
    assert wrong.status_code == 403
    assert wrong.json()["type"] == "urn:idp:problem:reauthentication-failed"
    assert audit.last("reauthentication")["outcome"] == "failure"
    r = await _enrol(services, tokens, {"password": account["password"]})
    assert r.status_code == 200, r.text
    event = audit.last("reauthentication")
    assert (event["outcome"], event["purpose"]) == ("success", "totp.enrol")


async def test_beside_a_passkey_enrolment_needs_a_recent_second_factor(
    services: Services, audit: AuditLog
) -> None:
    # A password-only session from before the passkey: it must not add a factor.
    account, tokens = await password_account(services)
    await enrol(services, tokens, SoftAuthenticator())
    r = await _enrol(services, tokens, {"password": account["password"]})
    assert r.status_code == 403, r.text
    assert r.json()["type"] == STEP_UP
    assert audit.last("step_up")["reason"] == "no_recent_second_factor"
    # A session that proved the passkey can.
    _, _, mfa_tokens, _ = await passkey_account(services)
    assert (await _enrol(services, mfa_tokens)).status_code == 200


# --- confirm ------------------------------------------------------------------


async def test_confirm_turns_mfa_on_with_recovery_codes(
    services: Services, audit: AuditLog
) -> None:
    clock = pin_clock(services)
    account, tokens = await password_account(services)
    secret, confirmed = await enrol_totp(services, tokens, clock)
    codes = confirmed["recovery_codes"]
    assert isinstance(codes, list)
    assert len(codes) == services.auth_settings.recovery_code_count
    assert audit.last("totp.added")["first"] is True
    on = audit.last("mfa.enabled")
    assert (on["method"], on["session_id"]) == ("totp", claims(tokens)["sid"])
    assert audit.last("recovery_codes.generated")["count"] == len(codes)
    # The password alone no longer logs in.
    r = await services.auth.post(
        "/login", json={"email": account["email"], "password": account["password"]}
    )
    assert r.json()["mfa_required"] is True
    assert r.json()["methods"] == ["totp"]
    for c in codes:
        assert c not in str(audit.records())
    assert secret not in str(audit.records())


async def test_a_wrong_code_is_400_and_changes_nothing(services: Services, audit: AuditLog) -> None:
    clock = pin_clock(services)
    account, tokens = await password_account(services)
    secret = (await _enrol(services, tokens)).json()["secret"]
    wrong = f"{(int(code(secret, clock)) + 1) % 1_000_000:06d}"
    r = await services.auth.post("/totp/confirm", json={"code": wrong}, headers=bearer(tokens))
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    event = audit.last("totp.added")
    assert (event["outcome"], event["reason"]) == ("failure", "totp_code_invalid")
    # A code two steps away is outside the window.
    far = await services.auth.post(
        "/totp/confirm", json={"code": code(secret, clock, 2)}, headers=bearer(tokens)
    )
    assert far.status_code == 400
    login = await services.auth.post(
        "/login", json={"email": account["email"], "password": account["password"]}
    )
    assert "access_token" in login.json()


@pytest.mark.parametrize("bad", ["12345", "1234567", "abcdef", "", "12 34 5x"])
async def test_malformed_codes_are_422(services: Services, bad: str) -> None:
    _, tokens = await password_account(services)
    await _enrol(services, tokens)
    r = await services.auth.post("/totp/confirm", json={"code": bad}, headers=bearer(tokens))
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"] == "application/problem+json"


async def test_confirm_without_enrolment_is_400(services: Services) -> None:
    _, tokens = await password_account(services)
    r = await services.auth.post("/totp/confirm", json={"code": "123456"}, headers=bearer(tokens))
    assert r.status_code == 400


async def test_confirm_twice_is_409(services: Services) -> None:
    clock = pin_clock(services)
    _, tokens = await password_account(services)
    secret, _ = await enrol_totp(services, tokens, clock)
    r = await services.auth.post(
        "/totp/confirm", json={"code": code(secret, clock, 1)}, headers=bearer(tokens)
    )
    assert r.status_code == 409


async def test_totp_beside_a_passkey_brings_no_new_recovery_codes(services: Services) -> None:
    clock = pin_clock(services)
    account, _authn, tokens, codes = await passkey_account(services)
    _, confirmed = await enrol_totp(services, tokens, clock)
    assert confirmed["recovery_codes"] is None
    # The passkey's codes still work.
    r = await services.auth.post(
        "/login", json={"email": account["email"], "password": account["password"]}
    )
    assert r.json()["methods"] == ["webauthn", "totp"]
    used = await services.auth.post(
        "/login/mfa", json={"mfa_token": r.json()["mfa_token"], "recovery_code": codes[0]}
    )
    assert used.status_code == 200, used.text


async def test_the_secret_is_sealed_at_rest(services: Services, tmp_path: Path) -> None:
    clock = pin_clock(services)
    _, tokens = await password_account(services)
    secret, _ = await enrol_totp(services, tokens, clock)
    db = sqlite3.connect(tmp_path / "auth.db")
    try:
        (sealed,) = db.execute("SELECT secret_sealed FROM totp_secrets").fetchone()
    finally:
        db.close()
    assert secret not in sealed
    assert sealed.startswith("v1.")
    # The development key was made in the key directory, private to the service.
    key_file = tmp_path / "keys" / "totp-secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600


async def test_status_follows_enrolment_and_confirmation(services: Services) -> None:
    clock = pin_clock(services)
    _, tokens = await password_account(services)

    async def status() -> dict[str, Any]:
        r = await services.auth.get("/totp", headers=bearer(tokens))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    assert await status() == {"enabled": False, "pending": False}
    secret = (await _enrol(services, tokens)).json()["secret"]
    assert await status() == {"enabled": False, "pending": True}
    r = await services.auth.post(
        "/totp/confirm", json={"code": code(secret, clock)}, headers=bearer(tokens)
    )
    assert r.status_code == 201
    assert await status() == {"enabled": True, "pending": False}
    assert (await services.auth.get("/totp")).status_code == 401
