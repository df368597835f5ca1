"""GET /users/me/export (auth service): everything the platform holds about the caller."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.conftest import Services, rejected_within_a_second
from tests.support.audit import AuditCapture
from tests.support.passkey_flows import bearer, claims, enrol, password_account
from tests.support.soft_authenticator import SoftAuthenticator

pytestmark = pytest.mark.anyio


async def _export(s: Services, tokens: dict[str, Any]) -> Any:
    return await s.auth.get("/users/me/export", headers=bearer(tokens))


async def test_export_holds_both_services_data_and_no_secret(
    services_any_db: Services, audit: AuditCapture
) -> None:
    s = services_any_db
    account, tokens = await password_account(s)
    user_id = tokens["user_id"]
    enrolled = await enrol(s, tokens, SoftAuthenticator(), label="Work laptop")
    codes = enrolled["recovery_codes"]
    patched = await s.user.patch(
        "/users/me", json={"job_title": "Architect"}, headers=bearer(tokens)
    )
    assert patched.status_code == 200
    # Something about the account on the user service's own trail: a denial.
    other = "0b7c1a9e-3c38-4f57-9a43-6f1d1c1e2f10"
    assert (await s.user.get(f"/users/{other}", headers=bearer(tokens))).status_code == 403
    await s.auth_app.state.obs.flush_audit()
    await s.user_app.state.obs.flush_audit()

    r = await _export(s, tokens)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    assert "attachment" in r.headers["content-disposition"]
    data = r.json()
    assert data["identity"]["id"] == user_id
    assert data["identity"]["email"] == account["email"]
    assert data["profile"]["name"] == account["name"]
    assert data["profile"]["job_title"] == "Architect"
    assert data["profile"]["date_of_birth"] == "1980-04-14"
    (session,) = data["sessions"]
    assert session["sid"] == claims(tokens)["sid"]
    assert session["current"] is True
    (passkey,) = data["passkeys"]
    assert passkey["label"] == "Work laptop"
    assert passkey["id"] == enrolled["credential"]["id"]
    assert data["recovery_codes"] == {"remaining": len(codes)}
    auth_events = {e["event"] for e in data["audit_events"]["auth_service"]}
    assert {"user.register", "login", "passkey.added", "mfa.enabled"} <= auth_events
    assert all(e["user_id"] == user_id for e in data["audit_events"]["auth_service"])
    user_events = {e["event"] for e in data["audit_events"]["user_service"]}
    assert {"profile.update", "access.denied"} <= user_events
    assert data["audit_events"]["truncated"] is False

    # No secret: no hash, no public key, no code, no token.
    text = r.text
    assert "password_hash" not in text
    assert "argon2" not in text
    assert "public_key" not in text
    assert "credential_id" not in text
    for secret in (*codes, account["password"], tokens["access_token"], tokens["refresh_token"]):
        assert secret not in text
    identity_row = await s.auth_app.state.ctx.identities.active_by_id(uuid.UUID(user_id))
    assert identity_row is not None
    assert identity_row.password_hash not in text

    (event,) = audit.named("account.export")
    assert (event["outcome"], event["user_id"]) == ("success", user_id)


async def test_export_is_only_ever_the_callers(services: Services) -> None:
    mine, my_tokens = await password_account(services)
    theirs, their_tokens = await password_account(services)
    data = (await _export(services, my_tokens)).json()
    text = json.dumps(data)
    assert theirs["email"] not in text
    assert their_tokens["user_id"] not in text
    assert data["identity"]["email"] == mine["email"]


async def test_export_needs_a_live_user_token(services: Services) -> None:
    assert (await services.auth.get("/users/me/export")).status_code == 401
    service = services.auth_app.state.ctx.issuer.service_token("profiles:read")
    r = await services.auth.get("/users/me/export", headers={"Authorization": f"Bearer {service}"})
    assert r.status_code == 401
    _, tokens = await password_account(services)
    assert (await services.auth.post("/logout", headers=bearer(tokens))).status_code == 204
    assert await rejected_within_a_second(services.user, "/users/me", bearer(tokens))
    assert (await _export(services, tokens)).status_code == 401


async def test_user_service_refusing_is_503_not_a_partial_export(
    services: Services, audit: AuditCapture
) -> None:
    _, tokens = await password_account(services)
    ctx = services.user_app.state.ctx
    trusted = ctx.settings
    ctx.settings = trusted.model_copy(update={"service_client_id": "someone-else"})
    try:
        r = await _export(services, tokens)
    finally:
        ctx.settings = trusted
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    (event,) = audit.named("account.export")
    assert (event["outcome"], event["reason"]) == ("failure", "unavailable")


async def test_internal_export_needs_the_read_scope(services: Services) -> None:
    _, tokens = await password_account(services)
    path = f"/internal/exports/{tokens['user_id']}"
    issuer = services.auth_app.state.ctx.issuer
    for token in (tokens["access_token"], issuer.service_token("profiles:write")):
        r = await services.user.get(path, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403
    reader = {"Authorization": f"Bearer {issuer.service_token('profiles:read')}"}
    r = await services.user.get(path, headers=reader)
    assert r.status_code == 200
    assert r.json()["profile"]["id"] == tokens["user_id"]
