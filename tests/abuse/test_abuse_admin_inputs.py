"""Admin-only inputs are attacker inputs too (a stolen admin token, a careless
script): the audit trail's query parameters must answer 4xx, never 500.

Regressions for what the schemathesis run found once it fuzzed with an
admin's token (tests/fuzz/test_fuzz_openapi.py).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Services, new_user

pytestmark = pytest.mark.anyio


async def _admin_bearer(s: Services, tmp_path: Path) -> dict[str, str]:
    body = new_user()
    assert (await s.auth.post("/users", json=body)).status_code == 201
    with sqlite3.connect(tmp_path / "auth.db") as db:  # what `admin promote` does
        db.execute("UPDATE identities SET roles = 'admin' WHERE email_key = ?", (body["email"],))
    r = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.mark.parametrize(
    "query",
    [
        # 19 digits passed the old pattern and overflowed SQLite's INTEGER.
        "cursor=9999999999999999999",
        # Valid ISO date-times whose UTC instant is outside years 1..9999.
        "since=0001-01-01T00:00:00%2B01:00",
        "until=9999-12-31T23:59:59-01:00",
        # Numbers are not date-times (pydantic read them as Unix timestamps).
        "until=0.5",
        "since=1700000000",
    ],
)
async def test_audit_query_edges_are_422_not_500(
    services: Services, tmp_path: Path, query: str
) -> None:
    bearer = await _admin_bearer(services, tmp_path)
    for client in (services.auth, services.user):
        r = await client.get(f"/audit/events?{query}", headers=bearer)
        assert r.status_code == 422, (query, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json"


async def test_audit_query_accepts_the_documented_forms(services: Services, tmp_path: Path) -> None:
    bearer = await _admin_bearer(services, tmp_path)
    for query in ("cursor=999999999999999999", "since=2020-01-01T00:00:00Z", "limit=200"):
        r = await services.auth.get(f"/audit/events?{query}", headers=bearer)
        assert r.status_code == 200, (query, r.text)
