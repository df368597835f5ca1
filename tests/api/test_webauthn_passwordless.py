"""Passwordless login with a discoverable passkey: /webauthn/login/options + /verify."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Services, start_services
from tests.support.passkey_flows import (
    AuditLog,
    audit_log,
    bearer,
    claims,
    passkey_account,
    start_mfa,
)
from tests.support.soft_authenticator import SoftAuthenticator

pytestmark = pytest.mark.anyio


@pytest.fixture
def audit(caplog: pytest.LogCaptureFixture) -> AuditLog:
    return audit_log(caplog)


async def _options(s: Services) -> dict[str, Any]:
    r = await s.auth.post("/webauthn/login/options")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _verify(s: Services, credential: dict[str, Any]) -> Any:
    return await s.auth.post("/webauthn/login/verify", json={"credential": credential})


def _refused(r: Any, audit: AuditLog, reason: str) -> None:
    assert r.status_code == 401, r.text
    assert "access_token" not in r.json()
    event = audit.last("passkey.login")
    assert (event["outcome"], event["reason"]) == ("failure", reason)


async def test_options_name_no_account(services: Services) -> None:
    r = await services.auth.post("/webauthn/login/options")
    assert r.text == json.dumps(json.loads(r.text))  # options_to_json, verbatim
    o = r.json()
    # Empty allowCredentials: any discoverable passkey for this RP (L3 §5.5).
    assert o["allowCredentials"] == []
    assert o["userVerification"] == "required"
    assert o["rpId"] == "localhost"
    # It takes no email at all, so it cannot tell who has an account.
    with_email = await services.auth.post(
        "/webauthn/login/options", json={"email": "john@example.com"}
    )
    assert set(with_email.json()) == set(o)
    assert with_email.json()["allowCredentials"] == []


async def test_passkey_alone_logs_in(services: Services, audit: AuditLog) -> None:
    account, authn, _, _ = await passkey_account(services)
    r = await _verify(services, authn.get(await _options(services)))
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert r.headers["cache-control"] == "no-store"
    c = claims(tokens)
    assert c["amr"] == ["hwk", "user"]
    assert isinstance(c["auth_time"], int)
    assert audit.last("passkey.login")["outcome"] == "success"
    me = await services.user.get(f"/users/{tokens['user_id']}", headers=bearer(tokens))
    assert me.status_code == 200
    assert me.json()["email"] == account["email"]
    listed = await services.auth.get("/webauthn/credentials", headers=bearer(tokens))
    assert listed.json()[0]["last_used_at"] is not None


async def test_user_handle_is_required(services: Services, audit: AuditLog) -> None:
    _, authn, _, _ = await passkey_account(services)
    r = await _verify(services, authn.get(await _options(services), user_handle=None))
    _refused(r, audit, "user_handle_missing")


async def test_user_handle_must_name_the_owner(services: Services, audit: AuditLog) -> None:
    _, authn, _, _ = await passkey_account(services)
    _, _, other_tokens, _ = await passkey_account(services)
    import uuid

    victim_handle = uuid.UUID(other_tokens["user_id"]).bytes
    r = await _verify(services, authn.get(await _options(services), user_handle=victim_handle))
    _refused(r, audit, "user_handle_mismatch")


async def test_replayed_login_is_refused(services: Services, audit: AuditLog) -> None:
    _, authn, _, _ = await passkey_account(services)
    assertion = authn.get(await _options(services))
    assert (await _verify(services, assertion)).status_code == 200
    _refused(await _verify(services, assertion), audit, "challenge_unknown")


async def test_mfa_challenge_cannot_log_in_without_a_password(
    services: Services, audit: AuditLog
) -> None:
    account, authn, _, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    # A challenge from the MFA step presented to the passwordless endpoint.
    r = await _verify(services, authn.get(pending["webauthn"]))
    _refused(r, audit, "challenge_unknown")


async def test_registration_challenge_cannot_log_in(services: Services, audit: AuditLog) -> None:
    _, authn, tokens, _ = await passkey_account(services)
    reg = (await services.auth.post("/webauthn/register/options", headers=bearer(tokens))).json()
    r = await _verify(services, authn.get(await _options(services), challenge=reg["challenge"]))
    _refused(r, audit, "challenge_unknown")


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        ({"uv": False}, "user_not_verified"),
        ({"origin": "https://evil.example"}, "origin_mismatch"),
        ({"rp_id": "evil.example"}, "rp_id_mismatch"),
        ({"sign_count": 0}, "sign_count_regression"),
    ],
)
async def test_forged_assertion_is_refused(
    services: Services, audit: AuditLog, forge: dict[str, Any], reason: str
) -> None:
    _, authn, _, _ = await passkey_account(services)
    _refused(await _verify(services, authn.get(await _options(services), **forge)), audit, reason)


async def test_unknown_passkey_is_refused(services: Services, audit: AuditLog) -> None:
    stranger = SoftAuthenticator()
    stranger.create({"rp": {"id": "localhost"}, "user": {"id": "AAAA"}, "challenge": "AAAA"})
    _refused(
        await _verify(services, stranger.get(await _options(services))), audit, "unknown_credential"
    )


async def test_synced_passkey_with_zero_counter_works_every_time(services: Services) -> None:
    # Synced passkeys report counter 0 forever (L3 §6.1.1); that is no clone
    # signal, and single-use challenges still stop replays.
    from tests.support.passkey_flows import enrol, password_account

    _, tokens = await password_account(services)
    synced = SoftAuthenticator(backup_eligible=True, backed_up=True, counter_step=0)
    await enrol(services, tokens, synced)
    for _ in range(3):
        assert (await _verify(services, synced.get(await _options(services)))).status_code == 200


async def test_backup_eligibility_cannot_change(services: Services, audit: AuditLog) -> None:
    _, authn, _, _ = await passkey_account(services)
    authn.backup_eligible = True  # BE is fixed at creation (L3 §7.2 step 18)
    r = await _verify(services, authn.get(await _options(services)))
    _refused(r, audit, "backup_eligibility_changed")


async def test_options_are_rate_limited_per_ip(tmp_path: Any, redis_prefix: str) -> None:
    urls = {
        "auth": f"sqlite+aiosqlite:///{tmp_path}/auth.db",
        "user": f"sqlite+aiosqlite:///{tmp_path}/user.db",
    }
    overrides = {"rate_limit_enabled": True, "passkey_options_ip_limit": 3}
    async for s in start_services(
        tmp_path=tmp_path, redis_prefix=redis_prefix, urls=urls, auth=overrides
    ):
        codes = [(await s.auth.post("/webauthn/login/options")).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
