"""Recovery codes: shown once, stored hashed, one use each, replaced as a set.

Runs on SQLite and PostgreSQL: spending a code is a conditional UPDATE whose
atomicity is the database's, so both backends must prove it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import Services
from tests.support.passkey_flows import (
    AuditLog,
    audit_log,
    bearer,
    claims,
    enrol,
    passkey_account,
    password_account,
    start_mfa,
)
from tests.support.soft_authenticator import SoftAuthenticator

pytestmark = pytest.mark.anyio


@pytest.fixture
def audit(caplog: pytest.LogCaptureFixture) -> AuditLog:
    return audit_log(caplog)


async def _with_code(s: Services, account: dict[str, str], code: str) -> Any:
    pending = await start_mfa(s, account)
    return await s.auth.post(
        "/login/mfa", json={"mfa_token": pending["mfa_token"], "recovery_code": code}
    )


async def test_a_code_replaces_the_passkey_once(services_any_db: Services, audit: AuditLog) -> None:
    s = services_any_db
    account, _, _, codes = await passkey_account(s)
    r = await _with_code(s, account, codes[0])
    assert r.status_code == 200, r.text
    assert claims(r.json())["amr"] == ["pwd", "otp"]
    used = audit.last("recovery_code.used")
    assert used["remaining"] == len(codes) - 1
    assert audit.last("mfa.verify")["method"] == "recovery_code"
    again = await _with_code(s, account, codes[0])
    assert again.status_code == 401
    failure = audit.last("mfa.verify")
    assert (failure["outcome"], failure["reason"]) == ("failure", "recovery_code_invalid")


async def test_codes_are_typed_forgivingly(services: Services) -> None:
    account, _, _, codes = await passkey_account(services)
    sloppy = codes[1].lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert (await _with_code(services, account, sloppy)).status_code == 200


async def test_wrong_and_foreign_codes_are_refused(services: Services) -> None:
    alice, _, _, _ = await passkey_account(services)
    _, _, _, bobs_codes = await passkey_account(services)
    for code in ("AAAA-BBBB", bobs_codes[0], "Z" * 24):
        assert (await _with_code(services, alice, code)).status_code == 401, code
    assert (await _with_code(services, alice, "")).status_code == 422


async def test_codes_are_stored_only_as_hashes(services: Services) -> None:
    _, _, _, codes = await passkey_account(services)
    engine = services.auth_app.state.ctx.engine
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT code_hash FROM recovery_codes"))).all()
    stored = " ".join(r[0] for r in rows)
    assert len(rows) == len(codes)
    for code in codes:
        assert code not in stored
        assert code.replace("-", "") not in stored


async def test_new_codes_invalidate_the_old_set(services: Services, audit: AuditLog) -> None:
    account, _, tokens, old = await passkey_account(services)
    r = await services.auth.post("/webauthn/recovery-codes", headers=bearer(tokens))
    assert r.status_code == 201, r.text
    new = r.json()["recovery_codes"]
    assert len(new) == services.auth_settings.recovery_code_count
    assert not set(new) & set(old)
    assert audit.last("recovery_codes.generated")["outcome"] == "success"
    assert (await _with_code(services, account, old[0])).status_code == 401
    assert (await _with_code(services, account, new[0])).status_code == 200


async def test_new_codes_need_a_recent_second_factor(services: Services) -> None:
    # A password-only session (from before the passkey) cannot mint codes:
    # that would be a way around the second factor.
    _, old_tokens = await password_account(services)
    await enrol(services, old_tokens, SoftAuthenticator())
    r = await services.auth.post("/webauthn/recovery-codes", headers=bearer(old_tokens))
    assert r.status_code == 403
    assert r.json()["type"] == "urn:idp:problem:step-up-required"


async def test_codes_need_a_passkey(services: Services) -> None:
    _, tokens = await password_account(services)
    # Forge a "recent MFA" token for a password-only account to reach the check.
    ctx = services.auth_app.state.ctx
    sid = claims(tokens)["sid"]
    import time

    tok = ctx.issuer.access_token(
        user_id=tokens["user_id"], sid=sid, roles=(), amr=("pwd", "otp"), auth_time=int(time.time())
    )
    r = await services.auth.post(
        "/webauthn/recovery-codes", headers={"Authorization": f"Bearer {tok.token}"}
    )
    assert r.status_code == 409
    assert r.json()["type"] == "urn:idp:problem:passkey-required"


async def test_parallel_use_of_one_code_lets_exactly_one_in(services_any_db: Services) -> None:
    s = services_any_db
    account, _, _, codes = await passkey_account(s)
    pendings = [await start_mfa(s, account) for _ in range(5)]
    results = await asyncio.gather(
        *(
            s.auth.post("/login/mfa", json={"mfa_token": p["mfa_token"], "recovery_code": codes[2]})
            for p in pendings
        )
    )
    assert sorted(r.status_code for r in results) == [200, 401, 401, 401, 401]
