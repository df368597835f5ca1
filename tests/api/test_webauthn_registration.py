"""Passkey enrolment: POST /webauthn/register/options and /webauthn/register/verify."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Services
from tests.support.passkey_flows import (
    AuditLog,
    audit_log,
    bearer,
    enrol,
    passkey_account,
    password_account,
)
from tests.support.soft_authenticator import SoftAuthenticator, b64url, unb64url

pytestmark = pytest.mark.anyio


@pytest.fixture
def audit(caplog: pytest.LogCaptureFixture) -> AuditLog:
    return audit_log(caplog)


async def _options(s: Services, tokens: dict[str, Any]) -> dict[str, Any]:
    r = await s.auth.post("/webauthn/register/options", headers=bearer(tokens))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _verify(s: Services, tokens: dict[str, Any], credential: dict[str, Any]) -> Any:
    return await s.auth.post(
        "/webauthn/register/verify", json={"credential": credential}, headers=bearer(tokens)
    )


def _failed(r: Any, audit: AuditLog, reason: str) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "urn:idp:problem:webauthn-failed"
    event = audit.last("passkey.added")
    assert (event["outcome"], event["reason"]) == ("failure", reason)


async def test_options_are_exactly_what_options_to_json_writes(services: Services) -> None:
    _, tokens = await password_account(services)
    r = await services.auth.post("/webauthn/register/options", headers=bearer(tokens))
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    # Byte-for-byte: json.dumps of options_to_json_dict, no re-serialisation.
    assert r.text == json.dumps(json.loads(r.text))
    o = r.json()
    assert o["rp"] == {"name": "Identity Platform", "id": "localhost"}
    assert unb64url(o["user"]["id"]) == __import__("uuid").UUID(tokens["user_id"]).bytes
    assert len(unb64url(o["challenge"])) >= 16  # L3 §13.4.3
    assert o["authenticatorSelection"] == {
        "residentKey": "required",
        "requireResidentKey": True,
        "userVerification": "required",
    }
    assert o["attestation"] == "none"
    assert o["excludeCredentials"] == []
    assert {-7, -8, -257} <= {p["alg"] for p in o["pubKeyCredParams"]}
    assert o["timeout"] == services.auth_settings.webauthn_timeout_seconds * 1000


async def test_options_need_a_user_token(services: Services) -> None:
    r = await services.auth.post("/webauthn/register/options")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


async def test_enrolment_stores_the_credential_record(services: Services, audit: AuditLog) -> None:
    _, tokens = await password_account(services)
    authn = SoftAuthenticator(aaguid=bytes(range(16)), backup_eligible=True, backed_up=True)
    body = await enrol(services, tokens, authn, label="  Work   laptop ")
    cred = body["credential"]
    assert cred["label"] == "Work laptop"
    assert cred["aaguid"] == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert cred["transports"] == ["internal", "hybrid"]
    assert cred["backup_eligible"] is True
    assert cred["backed_up"] is True
    assert cred["last_used_at"] is None
    assert len(body["recovery_codes"]) == services.auth_settings.recovery_code_count
    listed = await services.auth.get("/webauthn/credentials", headers=bearer(tokens))
    assert [c["id"] for c in listed.json()] == [cred["id"]]
    added = audit.last("passkey.added")
    assert added["outcome"] == "success"
    assert added["user_id"] == tokens["user_id"]
    assert added["webauthn_id"] == cred["id"]
    assert added["aaguid"] == cred["aaguid"]
    assert audit.last("recovery_codes.generated")["count"] == len(body["recovery_codes"])
    # Nothing secret in the audit trail: no codes, no key material.
    dumped = json.dumps(audit.records())
    assert body["recovery_codes"][0] not in dumped
    assert "[redacted]" not in dumped  # no detail was named like a secret


async def test_existing_passkeys_are_excluded(services: Services) -> None:
    _, authn, tokens, _ = await passkey_account(services)
    o = await _options(services, tokens)
    only = next(iter(authn.credentials.values()))
    assert [d["id"] for d in o["excludeCredentials"]] == [b64url(only.credential_id)]
    assert o["excludeCredentials"][0]["transports"] == ["internal", "hybrid"]


async def test_adding_a_second_passkey_needs_a_recent_second_factor(
    services: Services, audit: AuditLog
) -> None:
    # A password-only session from before MFA was turned on (think: stolen)
    # must not be able to add its own passkey next to the owner's.
    _, old_tokens = await password_account(services)
    await enrol(services, old_tokens, SoftAuthenticator())
    r = await services.auth.post("/webauthn/register/options", headers=bearer(old_tokens))
    assert r.status_code == 403
    assert r.json()["type"] == "urn:idp:problem:step-up-required"
    assert 'error="insufficient_user_authentication"' in r.headers["www-authenticate"]
    assert audit.last("step_up")["outcome"] == "denied"


async def test_replayed_registration_is_refused(services: Services, audit: AuditLog) -> None:
    _, tokens = await password_account(services)
    authn = SoftAuthenticator()
    o = await _options(services, tokens)
    cred = authn.create(o)
    assert (await _verify(services, tokens, cred)).status_code == 201
    _failed(await _verify(services, tokens, cred), audit, "challenge_unknown")


async def test_challenge_issued_to_another_user_is_refused(
    services: Services, audit: AuditLog
) -> None:
    _, alice = await password_account(services)
    _, mallory = await password_account(services)
    o = await _options(services, alice)
    cred = SoftAuthenticator().create(o)
    _failed(await _verify(services, mallory, cred), audit, "challenge_other_user")


async def test_challenge_of_the_login_ceremony_is_refused(
    services: Services, audit: AuditLog
) -> None:
    _, tokens = await password_account(services)
    o = await _options(services, tokens)
    login = (await services.auth.post("/webauthn/login/options")).json()
    cred = SoftAuthenticator().create(o, challenge=login["challenge"])
    _failed(await _verify(services, tokens, cred), audit, "challenge_unknown")


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        ({"origin": "https://evil.example"}, "origin_mismatch"),
        ({"origin": "http://localhost:8000.evil.example"}, "origin_mismatch"),
        ({"rp_id": "evil.example"}, "rp_id_mismatch"),
        ({"uv": False}, "user_not_verified"),
        ({"up": False}, "user_not_present"),
        ({"type_": "webauthn.get"}, "wrong_ceremony_type"),
        ({"credential_id": b"x" * 1024}, "credential_id_too_long"),
    ],
)
async def test_forged_attestation_is_refused(
    services: Services, audit: AuditLog, forge: dict[str, Any], reason: str
) -> None:
    _, tokens = await password_account(services)
    o = await _options(services, tokens)
    _failed(await _verify(services, tokens, SoftAuthenticator().create(o, **forge)), audit, reason)
    listed = await services.auth.get("/webauthn/credentials", headers=bearer(tokens))
    assert listed.json() == []


async def test_credential_id_registered_by_someone_else_is_refused(services: Services) -> None:
    _, alice = await password_account(services)
    _, bob = await password_account(services)
    same_id = b"\x42" * 32
    ok = await _verify(
        services,
        alice,
        SoftAuthenticator().create(await _options(services, alice), credential_id=same_id),
    )
    assert ok.status_code == 201
    clash = await _verify(
        services,
        bob,
        SoftAuthenticator().create(await _options(services, bob), credential_id=same_id),
    )
    assert clash.status_code == 409
    assert clash.json()["type"] == "urn:idp:problem:passkey-exists"


async def test_malformed_credentials_are_400_not_500(services: Services) -> None:
    _, tokens = await password_account(services)
    await _options(services, tokens)
    for junk in (
        {},
        {"response": {"clientDataJSON": "!!!"}},
        {
            "id": "a",
            "rawId": "a",
            "type": "public-key",
            "response": {"clientDataJSON": b64url(b"{}")},
        },
    ):
        assert (await _verify(services, tokens, junk)).status_code == 400


async def test_label_is_validated(services: Services) -> None:
    _, tokens = await password_account(services)
    o = await _options(services, tokens)
    cred = SoftAuthenticator().create(o)
    for label in ("x" * 65, "bad\nlabel", "nul\x00"):
        r = await services.auth.post(
            "/webauthn/register/verify",
            json={"credential": cred, "label": label},
            headers=bearer(tokens),
        )
        assert r.status_code == 422, label
    r = await services.auth.post(
        "/webauthn/register/verify",
        json={"credential": cred, "unexpected": 1},
        headers=bearer(tokens),
    )
    assert r.status_code == 422
