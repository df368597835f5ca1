"""POST /introspect (RFC 7662) and POST /revoke (RFC 7009) for registered
clients, authenticated the way Authlib does it."""

from __future__ import annotations

import pytest

from tests.conftest import Services, new_user
from tests.support.audit import AuditCapture
from tests.support.oauth import Client, authlib_client, register

pytestmark = pytest.mark.anyio


async def _login(s: Services) -> dict[str, str]:
    body = new_user()
    assert (await s.auth.post("/users", json=body)).status_code == 201
    r = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    assert r.status_code == 200, r.text
    tokens: dict[str, str] = r.json()
    return tokens


async def _introspect(s: Services, client: Client, token: str, **extra: str) -> dict[str, object]:
    async with authlib_client(s, client) as oauth:
        r = await oauth.introspect_token("/introspect", token=token, **extra)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body: dict[str, object] = r.json()
    return body


async def test_a_client_introspects_its_own_token(services: Services, audit: AuditCapture) -> None:
    client = await register(services, audience="reports", scopes=["reports:read"])
    async with authlib_client(services, client) as oauth:
        token = await oauth.fetch_token("/token", grant_type="client_credentials")
    audit.clear()
    answer = await _introspect(services, client, token["access_token"])
    assert answer["active"] is True
    assert answer["client_id"] == answer["sub"] == client.client_id
    assert answer["aud"] == "reports"
    assert answer["scope"] == "reports:read"
    assert answer["iss"] == "http://localhost:8000"
    assert isinstance(answer["exp"], int)
    [event] = audit.named("token.introspect")
    assert (event["outcome"], event["active"]) == ("success", True)
    assert token["access_token"] not in str(audit.events)


async def test_a_resource_server_introspects_tokens_for_its_audience(services: Services) -> None:
    caller = await register(services, audience="reports", scopes=["reports:read"])
    resource = await register(services, audience="reports", scopes=["introspect"])
    stranger = await register(services, audience="billing", scopes=["billing"])
    async with authlib_client(services, caller) as oauth:
        token = (await oauth.fetch_token("/token", grant_type="client_credentials"))["access_token"]
    assert (await _introspect(services, resource, token))["active"] is True
    # Neither issued to it nor meant for it: nothing to learn.
    assert await _introspect(services, stranger, token) == {"active": False}


async def test_user_tokens_are_active_until_their_session_is_revoked(services: Services) -> None:
    resource = await register(services, audience="user-service", scopes=["introspect"])
    tokens = await _login(services)
    answer = await _introspect(services, resource, tokens["access_token"])
    assert answer["active"] is True
    assert answer["sub"] == tokens["user_id"]
    assert answer["client_id"] == "idp-web"
    assert answer["sid"]
    logout = await services.auth.post(
        "/logout", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert logout.status_code == 204
    assert await _introspect(services, resource, tokens["access_token"]) == {"active": False}


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 4000])
async def test_unknown_tokens_are_inactive(services: Services, token: str) -> None:
    client = await register(services, audience="reports")
    assert await _introspect(services, client, token) == {"active": False}


async def test_introspection_needs_an_authenticated_confidential_client(
    services: Services, audit: AuditCapture
) -> None:
    client = await register(services, audience="reports")
    public = await register(
        services,
        public=True,
        grant_types=["authorization_code"],
        redirect_uris=["https://app.example/cb"],
    )
    audit.clear()
    for form, auth in (
        ({"token": "t"}, None),
        ({"token": "t"}, (client.client_id, "wrong")),
        ({"token": "t", "client_id": public.client_id}, None),
    ):
        r = await services.auth.post("/introspect", data=form, auth=auth)
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "invalid_client"
    assert [e["outcome"] for e in audit.named("token.introspect")] == ["failure"] * 3
    assert client.client_secret is not None
    missing = await services.auth.post(
        "/introspect", data={}, auth=(client.client_id, client.client_secret)
    )
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"


async def test_a_confidential_client_must_authenticate_to_revoke(services: Services) -> None:
    client = await register(services, audience="reports")
    tokens = await _login(services)
    wrong = await services.auth.post(
        "/revoke",
        data={"token": tokens["refresh_token"]},
        auth=(client.client_id, "not-the-secret"),
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    unauthenticated = await services.auth.post(
        "/revoke", data={"token": tokens["refresh_token"], "client_id": client.client_id}
    )
    assert unauthenticated.status_code == 401
    # Authenticated, it still may not revoke another client's token.
    async with authlib_client(services, client) as oauth:
        r = await oauth.revoke_token("/revoke", token=tokens["refresh_token"])
    assert r.status_code == 400
    assert r.json()["error"] == "unauthorized_client"
    me = await services.user.get(
        "/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200


async def test_discovery_lists_introspection(services: Services) -> None:
    meta = (await services.auth.get("/.well-known/openid-configuration")).json()
    assert meta["introspection_endpoint"] == "http://localhost:8000/introspect"
    assert "client_secret_basic" in meta["introspection_endpoint_auth_methods_supported"]
    assert "client_credentials" in meta["grant_types_supported"]
