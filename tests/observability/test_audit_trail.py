"""The audit trail: stdout JSON lines, the audit tables, and the admin API over them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from shared.audit.store import AUDIT_TABLE
from tests.conftest import Services, new_user
from tests.observability.conftest import AuditCapture, account, admin, bearer, cli

pytestmark = pytest.mark.anyio


async def _rows(app: Any, **where: str) -> list[dict[str, Any]]:
    await app.state.obs.flush_audit()
    stmt = select(AUDIT_TABLE)
    for column, value in where.items():
        stmt = stmt.where(AUDIT_TABLE.c[column] == value)
    async with app.state.ctx.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(stmt)]


async def test_a_signup_is_in_the_log_and_in_the_database(
    services: Services, audit: AuditCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    r = await services.auth.post("/users", json=new_user())
    assert r.status_code == 201
    uid = r.json()["id"]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    logged = [x for x in lines if x.get("log") == "audit" and x["event"] == "user.register"]
    assert len(logged) == 1
    assert logged[0]["user_id"] == uid
    (row,) = await _rows(services.auth_app, event="user.register", user_id=uid)
    assert (row["outcome"], row["service"]) == ("success", "auth-service")
    assert row["trace_id"] == logged[0]["trace_id"] == audit.events[0]["trace_id"]
    assert row["request_id"] == logged[0]["request_id"]


async def test_user_service_keeps_its_own_trail(services: Services) -> None:
    assert (await services.user.get("/users/me")).status_code == 401
    (row,) = await _rows(services.user_app, event="token.rejected")
    assert (row["service"], row["reason"]) == ("user-service", "missing")
    assert await _rows(services.auth_app, event="token.rejected") == []


async def test_only_admins_read_the_trail(services: Services, audit: AuditCapture) -> None:
    assert (await services.auth.get("/audit/events")).status_code == 401
    uid, _, tokens = await account(services)
    audit.clear()
    r = await services.auth.get("/audit/events", headers=bearer(tokens))
    assert r.status_code == 403
    denied = audit.named("access.denied")
    assert [(d["reason"], d["user_id"]) for d in denied] == [("not_admin", uid)]
    r = await services.user.get("/audit/events", headers=bearer(tokens))
    assert r.status_code == 403


async def test_admin_pages_and_filters_the_trail(services_any_db: Services) -> None:
    services = services_any_db  # SQLite and PostgreSQL: times, JSON, keyset paging
    before = datetime.now(UTC) - timedelta(seconds=1)
    users = [await account(services) for _ in range(3)]
    admin_id, headers = await admin(services)
    await services.auth_app.state.obs.flush_audit()

    page = await services.auth.get("/audit/events?event=user.register&limit=2", headers=headers)
    assert page.status_code == 200, page.text
    first = page.json()
    assert len(first["items"]) == 2
    assert first["next_cursor"]
    rest = (
        await services.auth.get(
            f"/audit/events?event=user.register&limit=2&cursor={first['next_cursor']}",
            headers=headers,
        )
    ).json()
    ids = [e["user_id"] for e in first["items"] + rest["items"]]
    assert rest["next_cursor"] is None
    assert sorted(ids) == sorted([u[0] for u in users] + [admin_id])  # 4 sign-ups, no repeats
    stamps = [e["id"] for e in first["items"] + rest["items"]]
    assert stamps == sorted(stamps, reverse=True)  # newest first

    mine = (await services.auth.get(f"/audit/events?user_id={users[0][0]}", headers=headers)).json()
    assert {e["event"] for e in mine["items"]} == {"user.register", "login"}

    failures = (await services.auth.get("/audit/events?outcome=failure", headers=headers)).json()
    assert failures["items"] == []

    window = {"since": before.isoformat(), "until": (before + timedelta(hours=1)).isoformat()}
    in_window = (await services.auth.get("/audit/events", params=window, headers=headers)).json()
    later = {"since": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    after = (await services.auth.get("/audit/events", params=later, headers=headers)).json()
    assert in_window["items"]
    assert after["items"] == []


async def test_admin_queries_are_validated(services: Services) -> None:
    _, headers = await admin(services)
    for query in ("limit=0", "limit=500", "cursor=abc", "since=2024-01-01T00:00:00"):
        r = await services.auth.get(f"/audit/events?{query}", headers=headers)
        assert r.status_code == 422, query
    r = await services.auth.get(
        "/audit/events?since=2030-01-01T00:00:00Z&until=2029-01-01T00:00:00Z", headers=headers
    )
    assert r.status_code == 422


async def test_operator_clis_are_on_the_trail(services: Services) -> None:
    _, headers = await admin(services)
    _, body, _ = await account(services)
    # Both at once: each is a process start with its own imports and migrations.
    promote = cli(services, "auth_service.admin", "promote", body["email"])
    rotate = cli(services, "auth_service.keys", "rotate", "--activate-after", "3600")
    p_out, p_err = promote.communicate(timeout=120)
    r_out, r_err = rotate.communicate(timeout=120)
    assert promote.returncode == 0, p_err
    assert rotate.returncode == 0, r_err

    # The same JSON line on stderr as in the table; stdout stays the human output.
    line = json.loads(r_err.strip().splitlines()[-1])
    assert line["event"] == "key.rotated"
    assert line["kid"] in r_out
    rotated = (await services.auth.get("/audit/events?event=key.rotated", headers=headers)).json()[
        "items"
    ]
    assert [(i["details"]["kid"], i["details"]["via"]) for i in rotated] == [(line["kid"], "cli")]

    granted = (
        await services.auth.get("/audit/events?event=admin.role_granted", headers=headers)
    ).json()["items"]
    assert len(granted) == 1
    assert granted[0]["outcome"] == "success"
    assert granted[0]["details"]["actor"]
    assert "admin.role_granted" in p_err
    assert body["email"] in p_out
