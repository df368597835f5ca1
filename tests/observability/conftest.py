"""Fixtures of the observability suite: captured audit events and spans, admins."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import REDIS_URL, Services, new_user
from tests.support.audit import AuditCapture

__all__ = ["AuditCapture"]


def capture_spans(*apps: FastAPI) -> InMemorySpanExporter:
    """Collect every span the apps' tracer providers finish from now on."""
    exporter = InMemorySpanExporter()
    for app in apps:
        app.state.obs.tracing.add_processor(SimpleSpanProcessor(exporter))
    return exporter


def service_of(span: ReadableSpan) -> str:
    return str(span.resource.attributes.get("service.name"))


async def account(s: Services) -> tuple[str, dict[str, str], dict[str, Any]]:
    """Register and log in a fresh user: (id, registration body, token response)."""
    body = new_user()
    r = await s.auth.post("/users", json=body)
    assert r.status_code == 201, r.text
    tok = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    assert tok.status_code == 200, tok.text
    return r.json()["id"], body, tok.json()


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def cli(s: Services, *args: str) -> subprocess.Popen[str]:
    """Start an operator CLI (`python -m ...`) on the services' database and key dir."""
    env = {
        **os.environ,
        "ENV": "test",
        "DATABASE_URL": s.auth_settings.database_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": s.auth_settings.redis_prefix,
        "KEY_DIR": str(s.auth_settings.key_dir),
    }
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def admin(s: Services) -> tuple[str, dict[str, str]]:
    """A user given the admin role, logged in: (id, bearer headers).

    The role is set through the repository, as `auth_service.admin promote`
    does; the CLI itself (a process start) is tested once, in test_audit_trail.
    """
    from auth_service.services.authentication import login_key

    uid, body, _ = await account(s)
    await s.auth_app.state.ctx.identities.set_roles(login_key(body["email"]), ("admin",))
    tok = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    return uid, bearer(tok.json())
