"""Audit events: one per security-relevant action, with every field the issue names."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import Services, new_user, start_services
from tests.observability.conftest import AuditCapture, account, bearer

pytestmark = pytest.mark.anyio

_FIELDS = {
    "time",
    "event",
    "outcome",
    "service",
    "user_id",
    "session_id",
    "reason",
    "client_ip",
    "user_agent",
    "request_id",
    "trace_id",
}
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def _only(audit: AuditCapture, event: str) -> dict[str, object]:
    found = audit.named(event)
    assert len(found) == 1, [e["event"] for e in audit.events]
    return found[0]


async def test_registration_success_carries_every_field(
    services: Services, audit: AuditCapture
) -> None:
    body = new_user()
    r = await services.auth.post(
        "/users", json=body, headers={"User-Agent": "audit-test/1", "X-Request-ID": "req-12345678"}
    )
    assert r.status_code == 201
    assert [e["event"] for e in audit.events] == ["user.register"]  # exactly one
    event = audit.events[0]
    assert set(event) >= _FIELDS
    assert event["outcome"] == "success"
    assert event["service"] == "auth-service"
    assert event["user_id"] == r.json()["id"]
    assert event["user_agent"] == "audit-test/1"
    assert event["request_id"] == "req-12345678"
    assert event["client_ip"] == "127.0.0.1"
    assert _TRACE_ID.match(str(event["trace_id"]))


async def test_registration_duplicate_weak_and_malformed(
    services: Services, audit: AuditCapture
) -> None:
    body = new_user()
    assert (await services.auth.post("/users", json=body)).status_code == 201
    audit.clear()
    assert (await services.auth.post("/users", json=body)).status_code == 409
    assert _only(audit, "user.register")["reason"] == "duplicate"
    audit.clear()
    weak = new_user(password="password1234")
    assert (await services.auth.post("/users", json=weak)).status_code == 422
    assert _only(audit, "user.register")["reason"] == "password_policy"
    audit.clear()
    bad = new_user(email="not-an-email")
    assert (await services.auth.post("/users", json=bad)).status_code == 422
    event = _only(audit, "user.register")
    assert (event["outcome"], event["reason"], event["fields"]) == (
        "failure",
        "validation",
        "email",
    )


async def test_login_success_and_failure_reason_stays_internal(
    services: Services, audit: AuditCapture
) -> None:
    uid, body, tokens = await account(services)
    ok = _only(audit, "login")
    assert (ok["outcome"], ok["user_id"], ok["method"]) == ("success", uid, "password")
    assert ok["session_id"]
    assert ok["session_id"] == _sid(tokens)
    audit.clear()
    r = await services.auth.post("/login", json={"email": body["email"], "password": "wrong" * 4})
    assert r.status_code == 401
    assert "invalid_credentials" not in r.text  # the client learns nothing specific
    failed = _only(audit, "login")
    assert (failed["outcome"], failed["reason"], failed["user_id"]) == (
        "failure",
        "invalid_credentials",
        None,
    )


async def test_refresh_reuse_logout_and_session_revocation(
    services: Services, audit: AuditCapture
) -> None:
    uid, _, tokens = await account(services)
    audit.clear()
    rotated = await services.auth.post(
        "/token/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert rotated.status_code == 200
    assert _only(audit, "token.refresh")["outcome"] == "success"
    # The successor is used: from now on the first token is reuse, not a retry.
    assert (
        await services.auth.post(
            "/token/refresh", json={"refresh_token": rotated.json()["refresh_token"]}
        )
    ).status_code == 200
    audit.clear()
    reused = await services.auth.post(
        "/token/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert reused.status_code == 401
    reuse = _only(audit, "refresh.reuse_detected")
    assert (reuse["outcome"], reuse["user_id"], reuse["session_id"]) == (
        "denied",
        uid,
        _sid(tokens),
    )
    assert not audit.named("token.refresh")  # one event for the request, not two

    _, body, second = await account(services)
    audit.clear()
    assert (await services.auth.post("/logout", headers=bearer(second))).status_code == 204
    assert _only(audit, "logout")["session_id"] == _sid(second)

    third = (
        await services.auth.post(
            "/login", json={"email": body["email"], "password": body["password"]}
        )
    ).json()
    fourth = (
        await services.auth.post(
            "/login", json={"email": body["email"], "password": body["password"]}
        )
    ).json()
    audit.clear()
    r = await services.auth.delete(f"/sessions/{_sid(third)}", headers=bearer(fourth))
    assert r.status_code == 204
    revoked = _only(audit, "session.revoked")
    assert (revoked["session_id"], revoked["by_session"]) == (_sid(third), _sid(fourth))
    audit.clear()
    r = await services.auth.delete("/sessions/nonexistent", headers=bearer(fourth))
    assert r.status_code == 404
    assert _only(audit, "session.revoked")["reason"] == "not_found"


async def test_user_service_audits_401_with_reason_and_403(
    services: Services, audit: AuditCapture
) -> None:
    uid, _, tokens = await account(services)
    other, _, _ = await account(services)
    audit.clear()
    assert (await services.user.get("/users/me")).status_code == 401
    missing = _only(audit, "token.rejected")
    assert (missing["service"], missing["reason"]) == ("user-service", "missing")
    audit.clear()
    garbage = {"Authorization": "Bearer not.a.token"}
    assert (await services.user.get("/users/me", headers=garbage)).status_code == 401
    assert _only(audit, "token.rejected")["reason"] == "malformed"
    audit.clear()
    assert (await services.user.get(f"/users/{other}", headers=bearer(tokens))).status_code == 403
    denied = _only(audit, "access.denied")
    assert (denied["service"], denied["reason"], denied["user_id"], denied["outcome"]) == (
        "user-service",
        "not_owner",
        uid,
        "denied",
    )
    audit.clear()
    assert (await services.user.get("/users", headers=bearer(tokens))).status_code == 403
    assert _only(audit, "access.denied")["reason"] == "not_admin"
    audit.clear()
    # After logout the token is refused as revoked, and said so on the trail.
    await services.auth.post("/logout", headers=bearer(tokens))
    audit.clear()
    assert (await services.user.get("/users/me", headers=bearer(tokens))).status_code == 401
    assert _only(audit, "token.rejected")["reason"] == "revoked"


@pytest.fixture
async def limited(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str]
) -> AsyncIterator[Services]:
    """Both services with the login rate limits on (2 attempts per account)."""
    async for s in start_services(
        tmp_path=tmp_path,
        redis_prefix=redis_prefix,
        urls=sqlite_urls,
        auth={"rate_limit_enabled": True, "login_account_limit": 2},
    ):
        yield s


async def test_rate_limited_attempt_is_one_rate_limited_event(
    limited: Services, audit: AuditCapture
) -> None:
    email = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    statuses = [
        (await limited.auth.post("/login", json={"email": email, "password": "x" * 12})).status_code
        for _ in range(3)
    ]
    assert statuses == [401, 401, 429]
    assert [e["event"] for e in audit.events] == ["login", "login", "rate_limited"]
    limited_event = audit.events[-1]
    assert (limited_event["reason"], limited_event["action"], limited_event["outcome"]) == (
        "login-account",
        "login",
        "denied",
    )


async def test_every_request_emits_at_most_one_event(
    services: Services, audit: AuditCapture
) -> None:
    uid, body, tokens = await account(services)
    r = await services.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    await services.auth.post("/token/refresh", json={"refresh_token": r.json()["refresh_token"]})
    await services.auth.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    await services.auth.post("/login", json={"email": body["email"], "password": "nope" * 4})
    await services.user.get(f"/users/{uid}", headers=bearer(tokens))
    await services.user.get("/users/me")
    per_request = Counter(e["request_id"] for e in audit.events)
    # register, login, refresh, refresh, reuse, failed login, revoked token, no token
    assert len(per_request) == 8
    assert max(per_request.values()) == 1, per_request


async def test_secret_named_details_are_redacted(audit: AuditCapture) -> None:
    from shared.audit.events import audit_event

    record = audit_event("test.event", outcome="success", service="t", password="hunter2hunter2")
    assert record["password"] == "[redacted]"
    assert "hunter2hunter2" not in str(audit.events)


def _sid(tokens: dict[str, object]) -> str:
    import jwt

    return str(jwt.decode(str(tokens["access_token"]), options={"verify_signature": False})["sid"])
