"""PATCH /users/me (user service): name, date of birth and job title, nothing else."""

from __future__ import annotations

import pytest

from tests.conftest import Services, new_user, rejected_within_a_second
from tests.support.audit import AuditCapture

pytestmark = pytest.mark.anyio


async def _signed_in(s: Services) -> tuple[dict[str, str], dict[str, str]]:
    body = new_user()
    assert (await s.auth.post("/users", json=body)).status_code == 201
    r = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    assert r.status_code == 200, r.text
    return body, {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_patch_changes_the_fields_sent_and_keeps_the_others(
    services_any_db: Services, audit: AuditCapture
) -> None:
    s = services_any_db
    body, bearer = await _signed_in(s)
    before = (await s.user.get("/users/me", headers=bearer)).json()
    r = await s.user.patch("/users/me", json={"job_title": "  Architect "}, headers=bearer)
    assert r.status_code == 200, r.text
    after = r.json()
    assert after["job_title"] == "Architect"  # trimmed, as at registration
    assert {k: v for k, v in after.items() if k != "job_title"} == {
        k: v for k, v in before.items() if k != "job_title"
    }
    # What the PATCH answered is what is stored.
    assert (await s.user.get("/users/me", headers=bearer)).json() == after

    # date_of_birth as an ISO date-time (what the seed client sends) or a date.
    r = await s.user.patch(
        "/users/me",
        json={"name": "Jane Roe", "date_of_birth": "1975-12-31T23:30:00-05:00"},
        headers=bearer,
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Jane Roe"
    assert r.json()["date_of_birth"] == "1975-12-31"  # the calendar date as written
    r = await s.user.patch("/users/me", json={"date_of_birth": "1990-01-02"}, headers=bearer)
    assert r.json()["date_of_birth"] == "1990-01-02"
    assert r.json()["email"] == body["email"]

    events = audit.named("profile.update")
    assert [e["outcome"] for e in events] == ["success"] * 3
    assert events[1]["fields"] == "date_of_birth,name"
    assert events[1]["user_id"] == after["id"]
    # Names of fields, never their values.
    assert "Jane Roe" not in str(events)
    assert "Architect" not in str(events)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"email": "other@example.com"}, "email"),
        ({"id": "0b7c1a9e-3c38-4f57-9a43-6f1d1c1e2f10"}, "id"),
        ({"roles": ["admin"]}, "roles"),
        ({"created_at": "2000-01-01T00:00:00Z"}, "created_at"),
        ({"name": "Ok", "jobtitle": "typo"}, "jobtitle"),
        ({"name": ""}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": None}, "name"),
        ({"job_title": None}, "job_title"),
        ({"date_of_birth": "1899-12-31"}, "date_of_birth"),
        ({"date_of_birth": "2999-01-01"}, "date_of_birth"),
        ({"date_of_birth": 630720000}, "date_of_birth"),
        ({"date_of_birth": "14/04/1980"}, "date_of_birth"),
    ],
)
async def test_anything_else_is_422_and_changes_nothing(
    services: Services, patch: dict[str, object], field: str
) -> None:
    _, bearer = await _signed_in(services)
    before = (await services.user.get("/users/me", headers=bearer)).json()
    r = await services.user.patch("/users/me", json=patch, headers=bearer)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in {e["field"] for e in r.json()["errors"]}
    assert (await services.user.get("/users/me", headers=bearer)).json() == before


async def test_a_body_that_is_not_an_object_is_422(services: Services) -> None:
    _, bearer = await _signed_in(services)
    for content in (b"[]", b'"name"', b"{", b""):
        r = await services.user.patch(
            "/users/me",
            content=content,
            headers={**bearer, "Content-Type": "application/json"},
        )
        assert r.status_code == 422, content


async def test_an_empty_patch_changes_nothing_and_answers_the_profile(services: Services) -> None:
    _, bearer = await _signed_in(services)
    before = (await services.user.get("/users/me", headers=bearer)).json()
    r = await services.user.patch("/users/me", json={}, headers=bearer)
    assert r.status_code == 200
    assert r.json() == before


async def test_patch_needs_a_user_token(services: Services) -> None:
    r = await services.user.patch("/users/me", json={"name": "Nobody"})
    assert r.status_code == 401
    assert "WWW-Authenticate" in r.headers
    service = services.auth_app.state.ctx.issuer.service_token()
    r = await services.user.patch(
        "/users/me", json={"name": "Nobody"}, headers={"Authorization": f"Bearer {service}"}
    )
    assert r.status_code in (401, 403)


async def test_a_logged_out_token_cannot_patch(services: Services) -> None:
    _, bearer = await _signed_in(services)
    assert (await services.auth.post("/logout", headers=bearer)).status_code == 204
    assert await rejected_within_a_second(services.user, "/users/me", bearer)
    r = await services.user.patch("/users/me", json={"name": "Too Late"}, headers=bearer)
    assert r.status_code == 401
