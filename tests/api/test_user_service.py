"""The user service's authorisation rules: self, admin, service tokens."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import jwt
import pytest

from tests.conftest import REDIS_URL, Services, new_user, rejected_within_a_second

pytestmark = pytest.mark.anyio


async def _account(s: Services) -> tuple[str, dict[str, str], dict[str, str]]:
    body = new_user()
    uid = (await s.auth.post("/users", json=body)).json()["id"]
    tok = (
        await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    ).json()
    return uid, body, {"Authorization": f"Bearer {tok['access_token']}"}


def _admin_cli(s: Services, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": s.auth_settings.database_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": s.auth_settings.redis_prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "auth_service.admin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_admin_reads_any_profile_and_lists_users(services: Services) -> None:
    admin_id, admin_body, before = await _account(services)
    other_id, _, _ = await _account(services)
    assert (await services.user.get("/users", headers=before)).status_code == 403

    # The CLI is a second writer on the same file: on SQLite a transaction
    # that read before the service's audit writer committed is refused at
    # once ("database is locked"), so the service is let settle first.
    await services.auth_app.state.obs.flush_audit()
    done = _admin_cli(services, "promote", admin_body["email"].upper())
    assert done.returncode == 0, done.stderr
    tok = (
        await services.auth.post(
            "/login", json={"email": admin_body["email"], "password": admin_body["password"]}
        )
    ).json()
    admin = {"Authorization": f"Bearer {tok['access_token']}"}
    assert jwt.decode(tok["access_token"], options={"verify_signature": False})["roles"] == [
        "admin"
    ]

    assert (await services.user.get(f"/users/{other_id}", headers=admin)).status_code == 200
    assert (await services.user.get(f"/users/{uuid.uuid4()}", headers=admin)).status_code == 404
    assert (await services.user.get("/users/not-a-uuid", headers=admin)).status_code == 404
    page = await services.user.get("/users", params={"limit": 1, "offset": 0}, headers=admin)
    assert page.status_code == 200
    body = page.json()
    assert body["total"] == 2
    assert body["limit"] == 1
    assert len(body["items"]) == 1
    second = (
        await services.user.get("/users", params={"limit": 1, "offset": 1}, headers=admin)
    ).json()
    assert {body["items"][0]["id"], second["items"][0]["id"]} == {admin_id, other_id}
    assert (
        await services.user.get("/users", params={"limit": 1000}, headers=admin)
    ).status_code == 422

    # Demotion ends the admin's sessions at once: old "admin" tokens stop working.
    assert _admin_cli(services, "demote", admin_body["email"]).returncode == 0
    assert await rejected_within_a_second(services.user, "/users", admin)


async def test_admin_cli_unknown_email_fails(services: Services) -> None:
    done = _admin_cli(services, "promote", "nobody@example.com")
    assert done.returncode == 1
    assert "no active account" in done.stderr


async def test_internal_profiles_accepts_only_service_tokens(services: Services) -> None:
    uid, _, user = await _account(services)
    ctx = services.auth_app.state.ctx
    service = {"Authorization": f"Bearer {ctx.issuer.service_token()}"}
    body = {
        "id": str(uuid.uuid4()),
        "name": "Svc Made",
        "email": "svc@example.com",
        "date_of_birth": "1990-01-01",
        "job_title": "Robot",
        "created_at": "2026-01-01T00:00:00Z",
    }
    assert (await services.user.post("/internal/profiles", json=body)).status_code == 401
    denied = await services.user.post("/internal/profiles", json=body, headers=user)
    assert denied.status_code == 403
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
    assert (
        await services.user.post("/internal/profiles", json=body, headers=service)
    ).status_code == 201
    again = await services.user.post(
        "/internal/profiles", json={**body, "job_title": "Droid"}, headers=service
    )
    assert again.status_code == 200
    assert again.json()["job_title"] == "Droid"
    # ...and a service token is not a user: it cannot read profiles.
    assert (await services.user.get(f"/users/{uid}", headers=service)).status_code == 403
    assert (await services.user.get("/users/me", headers=service)).status_code == 403
    assert (await services.auth.get("/sessions", headers=service)).status_code in (401, 403)


async def test_a_service_token_from_another_client_is_refused(services: Services) -> None:
    ctx = services.auth_app.state.ctx
    now = int(time.time())
    forged_client = ctx.keyring.sign(
        {
            "iss": "http://localhost:8000",
            "sub": "reporting",
            "aud": "user-service",
            "exp": now + 60,
            "iat": now,
            "jti": "x",
            "client_id": "reporting",
            "scope": "profiles:write",
        }
    )
    r = await services.user.post(
        "/internal/profiles", json={}, headers={"Authorization": f"Bearer {forged_client}"}
    )
    assert r.status_code == 403
