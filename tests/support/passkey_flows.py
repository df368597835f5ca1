"""Passkey flows over HTTP for the API tests: register, enrol, log in with MFA.

Each helper asserts the happy path's status so a test reads as its attack,
not as plumbing.
"""

from __future__ import annotations

import logging
from typing import Any

import jwt
import pytest

from tests.conftest import Services, new_user
from tests.support.soft_authenticator import SoftAuthenticator


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def claims(tokens: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(
        tokens["access_token"], options={"verify_signature": False}
    )
    return decoded


async def password_account(s: Services) -> tuple[dict[str, str], dict[str, Any]]:
    """A new account and a password-only login (amr pwd)."""
    body = new_user()
    r = await s.auth.post("/users", json=body)
    assert r.status_code == 201, r.text
    tok = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    assert tok.status_code == 200, tok.text
    assert "access_token" in tok.json()
    return body, tok.json()


async def enrol(
    s: Services, tokens: dict[str, Any], authn: SoftAuthenticator, label: str | None = None
) -> dict[str, Any]:
    """Run register/options + register/verify; returns the verify body."""
    opts = await s.auth.post("/webauthn/register/options", headers=bearer(tokens))
    assert opts.status_code == 200, opts.text
    payload: dict[str, Any] = {"credential": authn.create(opts.json())}
    if label is not None:
        payload["label"] = label
    r = await s.auth.post("/webauthn/register/verify", json=payload, headers=bearer(tokens))
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def start_mfa(s: Services, account: dict[str, str]) -> dict[str, Any]:
    """POST /login for an account with a passkey: the mfa_required answer."""
    r = await s.auth.post(
        "/login", json={"email": account["email"], "password": account["password"]}
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["mfa_required"] is True, body
    return body


async def mfa_login(
    s: Services, account: dict[str, str], authn: SoftAuthenticator
) -> dict[str, Any]:
    """Password + passkey: returns the tokens."""
    pending = await start_mfa(s, account)
    r = await s.auth.post(
        "/login/mfa",
        json={"mfa_token": pending["mfa_token"], "credential": authn.get(pending["webauthn"])},
    )
    assert r.status_code == 200, r.text
    tokens: dict[str, Any] = r.json()
    return tokens


async def passkey_account(
    s: Services,
) -> tuple[dict[str, str], SoftAuthenticator, dict[str, Any], list[str]]:
    """An account with one passkey, a fresh MFA login, and its recovery codes."""
    account, tokens = await password_account(s)
    authn = SoftAuthenticator()
    enrolled = await enrol(s, tokens, authn)
    codes = enrolled["recovery_codes"]
    assert codes
    return account, authn, await mfa_login(s, account, authn), codes


class AuditLog:
    """The audit records emitted during a test (the `audit` logger's records)."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog

    def records(self, event: str | None = None) -> list[dict[str, Any]]:
        out = []
        for rec in self._caplog.records:
            audit = getattr(rec, "audit", None)
            if isinstance(audit, dict) and (event is None or audit.get("event") == event):
                out.append(audit)
        return out

    def last(self, event: str) -> dict[str, Any]:
        found = self.records(event)
        assert found, f"no audit event {event!r}; got {[r['event'] for r in self.records()]}"
        return found[-1]


def audit_log(caplog: pytest.LogCaptureFixture) -> AuditLog:
    """Start capturing audit events (call from a test module's `audit` fixture)."""
    caplog.set_level(logging.INFO, logger="audit")
    return AuditLog(caplog)
