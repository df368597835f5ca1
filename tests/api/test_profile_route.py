"""`GET /users/{user_id}`: the fast handler answers exactly like FastAPI's own.

`user_service.api.users._ProfileReadRoute` skips FastAPI's dependency solving
and response-model pass on the hot read; these tests hold it to the
generic handler's answers, headers, order of checks and OpenAPI schema.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from auth_service.main import create_app as create_auth_app
from tests.conftest import Services, auth_settings, new_user, user_settings
from user_service.api.deps import get_ctx
from user_service.main import create_app
from user_service.schemas import ProfileOut

pytestmark = pytest.mark.anyio


async def _account(s: Services) -> tuple[str, dict[str, str]]:
    body = new_user()
    uid = (await s.auth.post("/users", json=body)).json()["id"]
    tok = (
        await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    ).json()
    return uid, {"Authorization": f"Bearer {tok['access_token']}"}


def _comparable(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != "x-request-id"}


async def test_fast_and_generic_handlers_answer_the_same_bytes(services: Services) -> None:
    uid, auth = await _account(services)
    fast = await services.user.get(f"/users/{uid}", headers=auth)
    assert fast.status_code == 200
    assert fast.headers["content-type"] == "application/json"
    assert fast.headers["cache-control"] == "no-store"
    assert fast.headers["content-security-policy"].startswith("default-src 'none'")
    profile = ProfileOut.model_validate_json(fast.content)
    assert fast.content == profile.model_dump_json().encode()
    assert set(fast.json()) == set(ProfileOut.model_fields)  # nothing beyond the model

    # Any dependency override sends the request through FastAPI's handler.
    app = services.user_app
    app.dependency_overrides[get_ctx] = get_ctx
    try:
        generic = await services.user.get(f"/users/{uid}", headers=auth)
    finally:
        app.dependency_overrides.clear()
    assert generic.status_code == 200
    assert generic.content == fast.content
    assert _comparable(dict(generic.headers)) == _comparable(dict(fast.headers))


async def test_errors_keep_their_shape_and_order(services: Services) -> None:
    uid, auth = await _account(services)
    other, _ = await _account(services)
    # Authentication comes before the path parameter, as with dependencies.
    too_long = "x" * 65
    r = await services.user.get(f"/users/{too_long}")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="user-service"'
    r = await services.user.get(f"/users/{too_long}", headers=auth)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    # At the limit the fast handler answers: 403 for anyone else's id...
    r = await services.user.get(f"/users/{'x' * 64}", headers=auth)
    assert r.status_code == 403
    assert r.json()["type"] == "urn:idp:problem:forbidden"
    assert (await services.user.get(f"/users/{other}", headers=auth)).status_code == 403
    # ...and 401 for a bad token, with the RFC 6750 challenge.
    r = await services.user.get(f"/users/{uid}", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


async def test_openapi_still_documents_the_route(services: Services) -> None:
    doc = (await services.user.get("/openapi.json")).json()
    op = doc["paths"]["/users/{user_id}"]["get"]
    (param,) = op["parameters"]
    assert param["name"] == "user_id"
    assert param["in"] == "path"
    assert param["schema"]["maxLength"] == 64
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/ProfileOut"}
    assert {"401", "403", "404", "422", "503"} <= set(op["responses"])


@pytest.mark.parametrize("service", ["auth", "user"])
def test_fastapi_native_telemetry_is_off(tmp_path: Path, service: str) -> None:
    # Tracing is the app's own (shared.observability.tracing); FastAPI's hooks on the global
    # providers would add a second, unconfigured set of spans.
    url = f"sqlite+aiosqlite:///{tmp_path}/{service}.db"
    if service == "auth":
        app = create_auth_app(auth_settings(database_url=url))
    else:
        app = create_app(user_settings(database_url=url))
    telemetry = app._telemetry
    assert telemetry["tracing"] is False
    assert telemetry["metrics"] is False
    assert telemetry["logs"] is False
