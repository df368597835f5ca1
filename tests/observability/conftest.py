"""Fixtures of the observability suite: captured audit events and spans, admins."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import REDIS_URL, Services, new_user, start_services
from tests.support.audit import AuditCapture

__all__ = ["AuditCapture"]

# Every SQL statement gets a span in this suite (TRACING_SQL_MIN_MS=0), so
# what a statement's span holds is checked on every flow (test_no_secrets).
# Deployed, only slow or failed statements do (test_tracing checks both).
EVERY_STATEMENT: dict[str, Any] = {"tracing_sql_min_ms": 0}


@pytest.fixture
async def services(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str]
) -> AsyncIterator[Services]:
    """Both services on SQLite + real Redis, in-process, tracing every statement."""
    async for s in start_services(
        tmp_path=tmp_path,
        redis_prefix=redis_prefix,
        urls=sqlite_urls,
        auth=EVERY_STATEMENT,
        user=EVERY_STATEMENT,
    ):
        yield s


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
