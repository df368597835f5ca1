"""Enrolling the first passkey needs a recent login or the password again.

The attack: someone holding a stolen refresh token (an old session) enrols
their own passkey as the account's first second factor and keeps its
recovery codes. From then on a password login needs that passkey: the owner
is locked out. A refresh keeps the session's `auth_time`, so a stolen refresh
token never passes for a recent login.
"""

from __future__ import annotations

import time
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Services, start_services
from tests.support.passkey_flows import AuditLog, audit_log, bearer, claims, password_account
from tests.support.soft_authenticator import SoftAuthenticator

pytestmark = pytest.mark.anyio

REAUTH = "urn:idp:problem:reauthentication-required"
WRONG = "urn:idp:problem:reauthentication-failed"


@pytest.fixture
def audit(caplog: pytest.LogCaptureFixture) -> AuditLog:
    return audit_log(caplog)


def _clock_at(monkeypatch: pytest.MonkeyPatch, offset: float) -> None:
    """Logins from now on start `offset` seconds from the real time."""
    import auth_service.services.authentication as authentication

    fake = types.SimpleNamespace(time=lambda: time.time() + offset)
    monkeypatch.setattr(authentication, "time", fake)


async def _stolen_session(
    s: Services, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, str], dict[str, Any]]:
    """A password login an hour ago, refreshed now: what a refresh-token thief holds."""
    _clock_at(monkeypatch, -3600)
    account, tokens = await password_account(s)
    monkeypatch.undo()
    r = await s.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200, r.text
    fresh: dict[str, Any] = r.json()
    assert time.time() - claims(fresh)["auth_time"] > 3000  # the refresh kept auth_time
    return account, fresh


async def _options(s: Services, tokens: dict[str, Any], body: dict[str, Any] | None = None) -> Any:
    return await s.auth.post("/webauthn/register/options", json=body, headers=bearer(tokens))


async def _enrol_with(
    s: Services, tokens: dict[str, Any], opts: Any, label: str = "Thief key"
) -> dict[str, Any]:
    assert opts.status_code == 200, opts.text
    credential = SoftAuthenticator().create(opts.json())
    r = await s.auth.post(
        "/webauthn/register/verify",
        json={"credential": credential, "label": label},
        headers=bearer(tokens),
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_a_refreshed_old_session_cannot_enrol_the_first_passkey(
    services: Services, monkeypatch: pytest.MonkeyPatch, audit: AuditLog
) -> None:
    _, tokens = await _stolen_session(services, monkeypatch)
    r = await _options(services, tokens)
    assert r.status_code == 403, r.text
    problem = r.json()
    assert problem["type"] == REAUTH
    assert problem["max_age"] == services.auth_settings.enrol_reauth_max_age_seconds
    assert "password" in problem["detail"]
    assert 'error="insufficient_user_authentication"' in r.headers["www-authenticate"]
    event = audit.last("step_up")
    assert (event["outcome"], event["reason"]) == ("denied", "no_recent_login")
    # Nothing was enrolled, no recovery codes exist: the owner's login is unchanged.
    listed = await services.auth.get("/webauthn/credentials", headers=bearer(tokens))
    assert listed.json() == []


async def test_the_wrong_password_is_refused_audited_and_counts_toward_login_limits(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str], audit: AuditLog
) -> None:
    limits = {
        "rate_limit_enabled": True,
        "login_account_network_limit": 3,
        "login_account_limit": 3,
    }
    async for s in _services(tmp_path, redis_prefix, sqlite_urls, limits):
        mp = pytest.MonkeyPatch()
        try:
            account, tokens = await _stolen_session(s, mp)
        finally:
            mp.undo()
        for _ in range(3):
            r = await _options(s, tokens, {"password": "Not-the-password-42"})
            assert r.status_code == 403, r.text
            assert r.json()["type"] == WRONG
            assert "Not-the-password" not in r.text
        event = audit.last("reauthentication")
        assert (event["outcome"], event["reason"]) == ("failure", "invalid_credentials")
        assert event["session_id"] == claims(tokens)["sid"]
        assert "Not-the-password" not in repr(audit.records())
        # The guesses used up the account's login attempts, as wrong logins do.
        r = await _options(s, tokens, {"password": account["password"]})
        assert r.status_code == 429, r.text
        login = await s.auth.post(
            "/login", json={"email": account["email"], "password": account["password"]}
        )
        assert login.status_code == 429, login.text


async def _services(
    tmp_path: Path, redis_prefix: str, urls: dict[str, str], auth: dict[str, Any]
) -> AsyncIterator[Services]:
    async for s in start_services(
        tmp_path=tmp_path, redis_prefix=redis_prefix, urls=urls, auth=auth
    ):
        yield s


async def test_the_password_again_allows_the_first_passkey_visibly(
    services: Services, monkeypatch: pytest.MonkeyPatch, audit: AuditLog
) -> None:
    account, tokens = await _stolen_session(services, monkeypatch)
    sid = claims(tokens)["sid"]
    opts = await _options(services, tokens, {"password": account["password"]})
    event = audit.last("reauthentication")
    assert (event["outcome"], event["session_id"]) == ("success", sid)
    enrolled = await _enrol_with(services, tokens, opts, label="Work laptop")
    assert enrolled["recovery_codes"]
    passkey = enrolled["credential"]

    # Audited with its own event, naming the session and how it was allowed.
    on = audit.last("mfa.enabled")
    assert on["outcome"] == "success"
    assert on["session_id"] == sid
    assert on["webauthn_id"] == passkey["id"]

    # The passkeys view: label, creation time, and the session that added it.
    listed = (await services.auth.get("/webauthn/credentials", headers=bearer(tokens))).json()
    assert [(p["label"], p["enrolled_by_session"]) for p in listed] == [("Work laptop", sid)]
    assert listed[0]["created_at"]
    # The sessions view: that session shows the passkey it added.
    sessions = (await services.auth.get("/sessions", headers=bearer(tokens))).json()
    added = {s["sid"]: s["passkeys_added"] for s in sessions}
    assert added[sid] == [
        {"id": passkey["id"], "label": "Work laptop", "created_at": listed[0]["created_at"]}
    ]


async def test_a_recent_login_enrols_without_the_password(
    services: Services, audit: AuditLog
) -> None:
    _, tokens = await password_account(services)
    opts = await _options(services, tokens)  # no body, as before
    assert not audit.records("reauthentication")
    enrolled = await _enrol_with(services, tokens, opts, label="Phone")
    on = audit.last("mfa.enabled")
    assert on["session_id"] == claims(tokens)["sid"]
    assert on["recent_login"] is True
    sessions = (await services.auth.get("/sessions", headers=bearer(tokens))).json()
    mine = next(s for s in sessions if s["current"])
    assert [p["label"] for p in mine["passkeys_added"]] == ["Phone"]
    assert enrolled["credential"]["enrolled_by_session"] == mine["sid"]


async def test_a_login_just_past_the_window_is_not_recent(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = services.auth_settings.enrol_reauth_max_age_seconds
    _clock_at(monkeypatch, -(window + 5))
    _, tokens = await password_account(services)
    monkeypatch.undo()
    r = await _options(services, tokens)
    assert r.status_code == 403
    assert r.json()["type"] == REAUTH


async def test_a_password_is_not_needed_or_checked_for_later_passkeys(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Later passkeys keep the step-up rule (a recent second factor), which a
    # password cannot replace: it is not a second factor.
    account, tokens = await password_account(services)
    await _enrol_with(services, tokens, await _options(services, tokens))
    r = await _options(services, tokens, {"password": account["password"]})
    assert r.status_code == 403
    assert r.json()["type"] == "urn:idp:problem:step-up-required"
