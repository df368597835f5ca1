"""Listing and removing passkeys: step-up, ownership, and the explicit last removal.

Removal runs on SQLite and PostgreSQL: "refuse the last one" must hold when
two removals race, which is the database's locking at work.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

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

pytestmark = pytest.mark.anyio


@pytest.fixture
def audit(caplog: pytest.LogCaptureFixture) -> AuditLog:
    return audit_log(caplog)


async def _list(s: Services, tokens: dict[str, Any]) -> list[dict[str, Any]]:
    r = await s.auth.get("/webauthn/credentials", headers=bearer(tokens))
    assert r.status_code == 200, r.text
    body: list[dict[str, Any]] = r.json()
    return body


def _token(
    s: Services, tokens: dict[str, Any], *, amr: tuple[str, ...], age: int
) -> dict[str, str]:
    """A token of the same live session with chosen amr/auth_time, signed by the service."""
    ctx = s.auth_app.state.ctx
    tok = ctx.issuer.access_token(
        user_id=tokens["user_id"],
        sid=claims(tokens)["sid"],
        roles=(),
        amr=amr,
        auth_time=int(time.time()) - age,
    )
    return {"Authorization": f"Bearer {tok.token}"}


async def test_list_shows_metadata_and_no_key_material(services: Services) -> None:
    _, _, tokens, _ = await passkey_account(services)
    [item] = await _list(services, tokens)
    assert set(item) == {
        "id",
        "label",
        "created_at",
        "last_used_at",
        "transports",
        "aaguid",
        "backup_eligible",
        "backed_up",
        "enrolled_by_session",  # the session that added it, also in GET /sessions
    }
    assert item["last_used_at"] is not None  # the MFA login used it
    assert item["enrolled_by_session"]  # the password login's session, not this MFA one
    assert item["enrolled_by_session"] != claims(tokens)["sid"]
    assert (await services.auth.get("/webauthn/credentials")).status_code == 401


async def test_removal_needs_a_recent_second_factor(services: Services, audit: AuditLog) -> None:
    _, _, tokens, _ = await passkey_account(services)
    second = await enrol(services, tokens, SoftAuthenticator())
    target = second["credential"]["id"]
    for headers in (
        _token(services, tokens, amr=("pwd",), age=0),  # no second factor at all
        _token(services, tokens, amr=("pwd", "hwk"), age=3600),  # too long ago
    ):
        r = await services.auth.delete(f"/webauthn/credentials/{target}", headers=headers)
        assert r.status_code == 403, r.text
        assert r.json()["type"] == "urn:idp:problem:step-up-required"
        assert r.json()["max_age"] == services.auth_settings.step_up_max_age_seconds
        assert 'max_age="' in r.headers["www-authenticate"]
    assert audit.last("step_up")["outcome"] == "denied"
    assert len(await _list(services, tokens)) == 2
    ok = await services.auth.delete(f"/webauthn/credentials/{target}", headers=bearer(tokens))
    assert ok.status_code == 204
    assert audit.last("passkey.removed")["outcome"] == "success"
    assert len(await _list(services, tokens)) == 1


async def test_recovery_code_login_counts_as_recent_mfa(services: Services) -> None:
    # Lost the phone: a recovery code login may remove the lost passkey.
    account, _, tokens, codes = await passkey_account(services)
    [lost] = await _list(services, tokens)
    from tests.support.passkey_flows import start_mfa

    pending = await start_mfa(services, account)
    r = await services.auth.post(
        "/login/mfa", json={"mfa_token": pending["mfa_token"], "recovery_code": codes[0]}
    )
    rec = r.json()
    gone = await services.auth.delete(
        f"/webauthn/credentials/{lost['id']}?confirm_last=true", headers=bearer(rec)
    )
    assert gone.status_code == 204


async def test_the_last_passkey_needs_explicit_confirmation(
    services: Services, audit: AuditLog
) -> None:
    account, _, tokens, _ = await passkey_account(services)
    [only] = await _list(services, tokens)
    r = await services.auth.delete(f"/webauthn/credentials/{only['id']}", headers=bearer(tokens))
    assert r.status_code == 409
    assert r.json()["type"] == "urn:idp:problem:last-passkey"
    assert len(await _list(services, tokens)) == 1
    ok = await services.auth.delete(
        f"/webauthn/credentials/{only['id']}?confirm_last=true", headers=bearer(tokens)
    )
    assert ok.status_code == 204
    assert audit.last("passkey.removed")["mfa_disabled"] is True
    # MFA is off again: the password alone logs in, and the codes are gone.
    login = await services.auth.post(
        "/login", json={"email": account["email"], "password": account["password"]}
    )
    assert "access_token" in login.json()
    engine = services.auth_app.state.ctx.engine
    from sqlalchemy import text

    async with engine.connect() as conn:
        left = (await conn.execute(text("SELECT count(*) FROM recovery_codes"))).scalar_one()
    assert left == 0


async def test_someone_elses_passkey_is_404(services: Services) -> None:
    _, _, alice, _ = await passkey_account(services)
    _, _, bob, _ = await passkey_account(services)
    [bobs] = await _list(services, bob)
    r = await services.auth.delete(
        f"/webauthn/credentials/{bobs['id']}?confirm_last=true", headers=bearer(alice)
    )
    assert r.status_code == 404
    missing = await services.auth.delete(
        f"/webauthn/credentials/{uuid.uuid4()}", headers=bearer(alice)
    )
    assert missing.status_code == 404
    assert len(await _list(services, bob)) == 1
    assert (
        await services.auth.delete("/webauthn/credentials/not-a-uuid", headers=bearer(alice))
    ).status_code == 422


async def test_racing_removals_never_remove_the_last_one_unconfirmed(
    services_any_db: Services,
) -> None:
    s = services_any_db
    _, _, tokens, _ = await passkey_account(s)
    await enrol(s, tokens, SoftAuthenticator())
    ids = [c["id"] for c in await _list(s, tokens)]
    results = await asyncio.gather(
        *(s.auth.delete(f"/webauthn/credentials/{i}", headers=bearer(tokens)) for i in ids)
    )
    codes = sorted(r.status_code for r in results)
    # One wins; the other is refused as "last" (409) or, on SQLite, may lose
    # the write lock (503, nothing changed). Never both 204.
    assert codes[0] == 204
    assert codes[1] in (409, 503)
    assert len(await _list(s, tokens)) == 1


async def test_password_only_account_lists_nothing(services: Services) -> None:
    _, tokens = await password_account(services)
    assert await _list(services, tokens) == []
