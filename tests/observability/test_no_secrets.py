"""No secret ever reaches an audit event, a log line, a span or a metric label.

Runs the suite's main flows (registration, password login, the OAuth2 token
endpoint, refresh and reuse, profile reads, logout, and their failures)
with every output captured, then greps all of it for every password,
access token, refresh token and service token that was in play.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import pytest
from sqlalchemy import select

from shared.audit.store import AUDIT_TABLE
from tests.conftest import Services, new_user
from tests.observability.conftest import AuditCapture, bearer, capture_spans
from tests.support.totp_flows import code, pin_clock

pytestmark = pytest.mark.anyio


class _Secrets:
    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, *values: str) -> None:
        for value in values:
            assert len(value) >= 10, "too short to grep for meaningfully"
            self.values.add(value)

    def tokens(self, body: dict[str, Any]) -> None:
        for name in ("access_token", "refresh_token"):
            if name in body:
                self.add(body[name])
                if name == "access_token":
                    self.add(body[name].rsplit(".", 1)[1])  # the signature alone
                else:
                    self.add(hashlib.sha256(body[name].encode()).hexdigest())  # its Redis key


async def _flows(s: Services, secrets: _Secrets) -> None:
    """The main flows of the suite, successes and failures, recording every secret."""
    body = new_user()
    secrets.add(body["password"])
    assert (await s.auth.post("/users", json=body)).status_code == 201
    assert (await s.auth.post("/users", json=body)).status_code == 409
    weak = new_user(password="password12345")
    secrets.add(weak["password"])
    assert (await s.auth.post("/users", json=weak)).status_code == 422
    typo = new_user(password="Tr0ub4dor&3-horse-battery", email="not-an-email")
    secrets.add(typo["password"])
    assert (await s.auth.post("/users", json=typo)).status_code == 422

    creds = {"email": body["email"], "password": body["password"]}
    wrong = "Wr0ng-but-long-enough!"
    secrets.add(wrong)
    assert (await s.auth.post("/login", json={**creds, "password": wrong})).status_code == 401
    login = (await s.auth.post("/login", json=creds)).json()
    secrets.tokens(login)

    form = {"grant_type": "password", "username": body["email"], "password": body["password"]}
    granted = (await s.auth.post("/token", data=form)).json()
    secrets.tokens(granted)
    bad_form = {**form, "password": wrong}
    assert (await s.auth.post("/token", data=bad_form)).status_code == 400
    refreshed_form = (
        await s.auth.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": granted["refresh_token"]},
        )
    ).json()
    secrets.tokens(refreshed_form)

    rotated = (
        await s.auth.post("/token/refresh", json={"refresh_token": login["refresh_token"]})
    ).json()
    secrets.tokens(rotated)
    # Its successor used, the first token is reuse (not a retry within the grace).
    rotated = (
        await s.auth.post("/token/refresh", json={"refresh_token": rotated["refresh_token"]})
    ).json()
    secrets.tokens(rotated)
    reuse = await s.auth.post("/token/refresh", json={"refresh_token": login["refresh_token"]})
    assert reuse.status_code == 401

    uid = rotated["user_id"]
    live = bearer(refreshed_form)
    assert (await s.user.get("/users/me", headers=live)).status_code == 200
    assert (await s.user.get(f"/users/{uid}", headers=live)).status_code == 200
    assert (await s.user.get("/users", headers=live)).status_code == 403
    assert (await s.user.get("/users/me", headers=bearer(rotated))).status_code == 401  # revoked
    tampered = refreshed_form["access_token"][:-4] + "AAAA"
    assert (
        await s.user.get("/users/me", headers={"Authorization": f"Bearer {tampered}"})
    ).status_code == 401
    assert (await s.auth.get("/sessions", headers=live)).status_code == 200
    assert (await s.auth.post("/logout", headers=live)).status_code == 204
    assert (await s.user.get("/users/me", headers=live)).status_code == 401

    # TOTP: enrolment (the secret, its URI), confirmation (recovery codes),
    # a wrong and a right code at the second step (the mfa_token).
    clock = pin_clock(s)
    totp_user = new_user()
    secrets.add(totp_user["password"])
    assert (await s.auth.post("/users", json=totp_user)).status_code == 201
    totp_creds = {"email": totp_user["email"], "password": totp_user["password"]}
    first = (await s.auth.post("/login", json=totp_creds)).json()
    secrets.tokens(first)
    enrolled = (await s.auth.post("/totp/enrol", headers=bearer(first))).json()
    secrets.add(enrolled["secret"], enrolled["otpauth_uri"])
    confirmed = await s.auth.post(
        "/totp/confirm", json={"code": code(enrolled["secret"], clock)}, headers=bearer(first)
    )
    assert confirmed.status_code == 201
    secrets.add(*confirmed.json()["recovery_codes"])
    clock.advance()
    for totp in (f"{(int(code(enrolled['secret'], clock)) + 1) % 10**6:06d}", None):
        pending = (await s.auth.post("/login", json=totp_creds)).json()
        secrets.add(pending["mfa_token"])
        right = totp or code(enrolled["secret"], clock)
        r = await s.auth.post("/login/mfa", json={"mfa_token": pending["mfa_token"], "totp": right})
        assert r.status_code == (200 if totp is None else 401), r.text
        if totp is None:
            secrets.tokens(r.json())

    secrets.add(s.auth_app.state.ctx.issuer.service_token())
    identity = await s.auth_app.state.ctx.identities.active_by_id(__import__("uuid").UUID(uid))
    secrets.add(identity.password_hash)


async def _audit_rows(app: Any) -> list[dict[str, Any]]:
    await app.state.obs.flush_audit()
    async with app.state.ctx.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(AUDIT_TABLE))]


def _span_text(span: Any) -> str:
    parts = [
        span.name,
        json.dumps(dict(span.attributes or {}), default=str),
        json.dumps(dict(span.resource.attributes), default=str),
        str(span.status.description),
    ]
    for event in span.events:
        parts += [event.name, json.dumps(dict(event.attributes or {}), default=str)]
    return "\n".join(parts)


async def test_no_secret_in_events_logs_spans_or_metrics(
    services: Services,
    audit: AuditCapture,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)  # what runs in production (LOG_LEVEL=INFO)
    for ours in ("auth_service", "user_service", "shared"):
        caplog.set_level(logging.DEBUG, logger=ours)
    spans = capture_spans(services.auth_app, services.user_app)
    secrets = _Secrets()

    await _flows(services, secrets)

    outputs: dict[str, str] = {
        "audit events": json.dumps(audit.events, default=str),
        "log records": "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records),
        "spans": "\n".join(_span_text(sp) for sp in spans.get_finished_spans()),
        "auth /metrics": (await services.auth.get("/metrics")).text,
        "user /metrics": (await services.user.get("/metrics")).text,
        "auth audit table": json.dumps(await _audit_rows(services.auth_app), default=str),
        "user audit table": json.dumps(await _audit_rows(services.user_app), default=str),
    }
    captured = capsys.readouterr()
    outputs["stdout"], outputs["stderr"] = captured.out, captured.err

    # The capture really saw the flows (a grep of nothing proves nothing).
    assert len(audit.events) >= 15
    # 48 today: the revocation cache and direct SQLite reads removed some
    # Redis and SQL spans. The floor only proves spans were captured at all.
    assert len(spans.get_finished_spans()) >= 40
    assert outputs["stdout"].count('"log":"audit"') == len(audit.events)
    assert "token.rejected" in outputs["user audit table"]

    leaks = [
        f"{where}: ...{text[max(0, i - 40) : i + 10]!r}..."
        for where, text in outputs.items()
        for secret in secrets.values
        if (i := text.find(secret)) >= 0
    ]
    assert leaks == []
