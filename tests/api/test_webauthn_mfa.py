"""Password + passkey login (POST /login -> POST /login/mfa), and a named test
per ceremony attack: each is a 401 problem and an audit event with its reason.

The assertions come from the software authenticator in tests/support, whose
responses are byte-for-byte what a browser sends; the verifier is never mocked.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.conftest import REDIS_URL, Services
from tests.support.passkey_flows import (
    AuditLog,
    audit_log,
    bearer,
    claims,
    enrol,
    mfa_login,
    passkey_account,
    password_account,
    start_mfa,
)
from tests.support.soft_authenticator import SoftAuthenticator, b64url

pytestmark = pytest.mark.anyio


@pytest.fixture
def audit(caplog: pytest.LogCaptureFixture) -> AuditLog:
    return audit_log(caplog)


async def _mfa(s: Services, pending: dict[str, Any], credential: dict[str, Any]) -> Any:
    return await s.auth.post(
        "/login/mfa", json={"mfa_token": pending["mfa_token"], "credential": credential}
    )


def _refused(r: Any, audit: AuditLog, reason: str) -> None:
    """The common shape of every refusal: 401 problem, no tokens, audit reason."""
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "access_token" not in r.json()
    event = audit.last("mfa.verify")
    assert event["outcome"] == "failure"
    assert event["reason"] == reason, event


# --- the flow ----------------------------------------------------------------


async def test_password_alone_gives_no_tokens_once_a_passkey_exists(services: Services) -> None:
    account, authn, _, _ = await passkey_account(services)
    r = await services.auth.post(
        "/login", json={"email": account["email"], "password": account["password"]}
    )
    body = r.json()
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    assert set(body) == {"mfa_required", "mfa_token", "expires_in", "methods", "webauthn"}
    assert body["mfa_required"] is True
    assert body["methods"] == ["webauthn"]
    assert 60 <= body["expires_in"] <= 900
    options = body["webauthn"]
    assert options["rpId"] == "localhost"
    assert options["userVerification"] == "required"
    # allowCredentials names the user's own passkey (L3 §5.5).
    only = next(iter(authn.credentials.values()))
    assert [d["id"] for d in options["allowCredentials"]] == [b64url(only.credential_id)]


async def test_oauth_password_grant_refuses_mfa_accounts(services: Services) -> None:
    account, _, _, _ = await passkey_account(services)
    r = await services.auth.post(
        "/token",
        data={
            "grant_type": "password",
            "username": account["email"],
            "password": account["password"],
        },
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"
    assert "second factor" in r.json()["error_description"]
    assert "access_token" not in r.json()


async def test_wrong_password_still_401_and_reveals_no_mfa(services: Services) -> None:
    account, _, _, _ = await passkey_account(services)
    r = await services.auth.post(
        "/login", json={"email": account["email"], "password": "not-the-password-123"}
    )
    assert r.status_code == 401
    assert "mfa_token" not in r.json()


async def test_password_and_passkey_give_both_factors(services: Services, audit: AuditLog) -> None:
    account, authn, _, _ = await passkey_account(services)
    before = int(time.time())
    tokens = await mfa_login(services, account, authn)
    c = claims(tokens)
    assert c["amr"] == ["pwd", "hwk"]
    assert before - 1 <= c["auth_time"] <= int(time.time()) + 1
    assert audit.last("mfa.verify")["outcome"] == "success"
    assert audit.last("mfa.verify")["method"] == "passkey"
    # The tokens are real: the user service accepts them.
    me = await services.user.get(f"/users/{tokens['user_id']}", headers=bearer(tokens))
    assert me.status_code == 200
    # And the session keeps both factors across a refresh.
    r = await services.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert claims(r.json())["amr"] == ["pwd", "hwk"]
    assert claims(r.json())["auth_time"] == c["auth_time"]


async def test_mfa_request_needs_exactly_one_factor(services: Services) -> None:
    account, authn, _, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    neither = await services.auth.post("/login/mfa", json={"mfa_token": pending["mfa_token"]})
    both = await services.auth.post(
        "/login/mfa",
        json={
            "mfa_token": pending["mfa_token"],
            "credential": authn.get(pending["webauthn"]),
            "recovery_code": "AAAA",
        },
    )
    assert neither.status_code == both.status_code == 422


# --- attacks -----------------------------------------------------------------


async def test_sign_count_regression_is_refused(services: Services, audit: AuditLog) -> None:
    account, authn, _, _ = await passkey_account(services)
    # The passkey has signed once (counter 1) at the MFA login; a clone that
    # reports 1 again (or less) is refused even with a valid signature.
    pending = await start_mfa(services, account)
    r = await _mfa(services, pending, authn.get(pending["webauthn"], sign_count=1))
    _refused(r, audit, "sign_count_regression")


async def test_wrong_origin_is_refused(services: Services, audit: AuditLog) -> None:
    account, authn, _, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    phished = authn.get(pending["webauthn"], origin="https://login.evil.example")
    _refused(await _mfa(services, pending, phished), audit, "origin_mismatch")


async def test_wrong_rp_id_is_refused(services: Services, audit: AuditLog) -> None:
    account, authn, _, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    r = await _mfa(services, pending, authn.get(pending["webauthn"], rp_id="evil.example"))
    _refused(r, audit, "rp_id_mismatch")


async def test_cross_origin_ceremony_is_refused(services: Services, audit: AuditLog) -> None:
    account, authn, _, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    r = await _mfa(services, pending, authn.get(pending["webauthn"], cross_origin=True))
    _refused(r, audit, "cross_origin")


async def test_challenge_of_the_registration_ceremony_is_refused(
    services: Services, audit: AuditLog
) -> None:
    account, authn, tokens, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    reg = await services.auth.post("/webauthn/register/options", headers=bearer(tokens))
    foreign = authn.get(pending["webauthn"], challenge=reg.json()["challenge"])
    _refused(await _mfa(services, pending, foreign), audit, "challenge_mismatch")


async def test_challenge_of_the_passwordless_ceremony_is_refused(
    services: Services, audit: AuditLog
) -> None:
    account, authn, _, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    other = (await services.auth.post("/webauthn/login/options")).json()
    foreign = authn.get(pending["webauthn"], challenge=other["challenge"])
    _refused(await _mfa(services, pending, foreign), audit, "challenge_mismatch")


async def test_assertion_typed_as_registration_is_refused(
    services: Services, audit: AuditLog
) -> None:
    account, authn, _, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    r = await _mfa(services, pending, authn.get(pending["webauthn"], type_="webauthn.create"))
    _refused(r, audit, "wrong_ceremony_type")


async def test_challenge_of_another_user_is_refused(services: Services, audit: AuditLog) -> None:
    alice, _, _, _ = await passkey_account(services)
    bob, bob_key, _, _ = await passkey_account(services)
    alice_pending = await start_mfa(services, alice)
    bob_pending = await start_mfa(services, bob)
    # Bob's passkey answers Alice's challenge and is sent with Bob's token.
    crossed = bob_key.get(bob_pending["webauthn"], challenge=alice_pending["webauthn"]["challenge"])
    _refused(await _mfa(services, bob_pending, crossed), audit, "challenge_mismatch")


async def test_someone_elses_credential_is_refused(services: Services, audit: AuditLog) -> None:
    alice, _, _, _ = await passkey_account(services)
    _, mallory_key, _, _ = await passkey_account(services)
    pending = await start_mfa(services, alice)
    # Mallory knows Alice's password and answers Alice's challenge with
    # Mallory's own (valid, registered) passkey.
    cred = next(iter(mallory_key.credentials.values()))
    forged = mallory_key.get(pending["webauthn"], credential=cred)
    _refused(await _mfa(services, pending, forged), audit, "credential_not_owned")
    assert audit.last("mfa.verify")["user_id"] is not None


async def test_unknown_credential_is_refused(services: Services, audit: AuditLog) -> None:
    account, _, _, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    # A passkey this server never registered, answering the right challenge.
    stranger = SoftAuthenticator()
    stranger.create({"rp": {"id": "localhost"}, "user": {"id": "AAAA"}, "challenge": "AAAA"})
    cred = next(iter(stranger.credentials.values()))
    forged = stranger.get(pending["webauthn"], credential=cred)
    _refused(await _mfa(services, pending, forged), audit, "unknown_credential")


async def test_user_verification_missing_is_refused(services: Services, audit: AuditLog) -> None:
    account, authn, _, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    _refused(
        await _mfa(services, pending, authn.get(pending["webauthn"], uv=False)),
        audit,
        "user_not_verified",
    )


async def test_user_presence_missing_is_refused(services: Services, audit: AuditLog) -> None:
    account, authn, _, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    r = await _mfa(services, pending, authn.get(pending["webauthn"], up=False))
    _refused(r, audit, "user_not_present")


async def test_tampered_signature_is_refused(services: Services, audit: AuditLog) -> None:
    account, authn, _, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    cred = authn.get(pending["webauthn"])
    sig = bytearray(cred["response"]["signature"].encode())
    sig[10] = ord("A") if sig[10] != ord("A") else ord("B")
    cred["response"]["signature"] = sig.decode()
    _refused(await _mfa(services, pending, cred), audit, "signature_invalid")


async def test_user_handle_of_someone_else_is_refused(services: Services, audit: AuditLog) -> None:
    account, authn, _, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    r = await _mfa(services, pending, authn.get(pending["webauthn"], user_handle=b"\x01" * 16))
    _refused(r, audit, "user_handle_mismatch")


async def test_replayed_assertion_is_refused(services: Services, audit: AuditLog) -> None:
    account, authn, _, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    assertion = authn.get(pending["webauthn"])
    assert (await _mfa(services, pending, assertion)).status_code == 200
    # The same bytes again, with a fresh mfa_token: its challenge differs.
    again = await start_mfa(services, account)
    _refused(await _mfa(services, again, assertion), audit, "challenge_mismatch")


async def test_replayed_mfa_token_is_refused(services: Services, audit: AuditLog) -> None:
    account, authn, _, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    assert (await _mfa(services, pending, authn.get(pending["webauthn"]))).status_code == 200
    r = await _mfa(services, pending, authn.get(pending["webauthn"]))
    _refused(r, audit, "mfa_token_unknown")
    assert r.json()["type"] == "urn:idp:problem:mfa-token-invalid"


async def test_failed_attempt_spends_the_mfa_token(services: Services, audit: AuditLog) -> None:
    account, authn, _, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    assert (
        await _mfa(services, pending, authn.get(pending["webauthn"], uv=False))
    ).status_code == 401
    # One password check buys one second-factor attempt, not a guessing session.
    _refused(
        await _mfa(services, pending, authn.get(pending["webauthn"])), audit, "mfa_token_unknown"
    )


async def test_expired_mfa_token_is_refused(
    services: Services, audit: AuditLog, redis_prefix: str
) -> None:
    account, authn, _, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{redis_prefix}chal:mfa:*")]
        assert len(keys) == 1
        ttl = await client.ttl(keys[0])
        assert 0 < ttl <= services.auth_settings.mfa_token_ttl_seconds
        # Fast-forward to expiry: Redis drops the key as it would at the TTL.
        await client.pexpire(keys[0], 1)
        await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    _refused(
        await _mfa(services, pending, authn.get(pending["webauthn"])), audit, "mfa_token_unknown"
    )


async def test_forged_mfa_token_is_refused(services: Services, audit: AuditLog) -> None:
    account, authn, _, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    forged = {**pending, "mfa_token": pending["mfa_token"][:-2] + "xx"}
    _refused(
        await _mfa(services, forged, authn.get(pending["webauthn"])), audit, "mfa_token_unknown"
    )


async def test_malformed_credential_is_a_401_not_a_500(services: Services, audit: AuditLog) -> None:
    account, _, _, _ = await passkey_account(services)
    for junk in (
        {},
        {"id": "x", "rawId": "x", "type": "public-key", "response": {}},
        {"response": "x"},
    ):
        pending = await start_mfa(services, account)
        _refused(await _mfa(services, pending, junk), audit, "malformed")


async def test_parallel_use_of_one_assertion_yields_one_session(services: Services) -> None:
    account, authn, _, _ = await passkey_account(services)
    pending = await start_mfa(services, account)
    assertion = authn.get(pending["webauthn"])
    results = await asyncio.gather(*(_mfa(services, pending, assertion) for _ in range(5)))
    assert sorted(r.status_code for r in results) == [200, 401, 401, 401, 401]


async def test_account_without_passkey_is_unchanged(services: Services) -> None:
    # Regression guard for the seed client: password login still gives tokens.
    _, tokens = await password_account(services)
    assert claims(tokens)["amr"] == ["pwd"]


async def test_second_passkey_works_for_mfa_too(services: Services) -> None:
    account, first, tokens, _ = await passkey_account(services)
    second = SoftAuthenticator()
    enrolled = await enrol(services, tokens, second, label="Backup key")
    assert enrolled["recovery_codes"] is None  # only the first enrolment mints codes
    pending = await start_mfa(services, account)
    assert len(pending["webauthn"]["allowCredentials"]) == 2
    assert (await _mfa(services, pending, second.get(pending["webauthn"]))).status_code == 200
    pending = await start_mfa(services, account)
    assert (await _mfa(services, pending, first.get(pending["webauthn"]))).status_code == 200
