"""grant_type=client_credentials (RFC 6749 §4.4) with Authlib as the client, and
what the user service makes of such tokens."""

from __future__ import annotations

import base64

import pytest
from authlib.integrations.base_client.errors import OAuthError as AuthlibError

from tests.conftest import Services, new_user
from tests.support.audit import AuditCapture
from tests.support.oauth import Client, authlib_client, claims_of, header_of, register

pytestmark = pytest.mark.anyio


async def _reports(s: Services, **kwargs: object) -> Client:
    args: dict[str, object] = {"audience": "reports", "scopes": ["reports:read", "reports:write"]}
    args.update(kwargs)
    return await register(s, **args)


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_a_client_gets_its_own_token(services: Services, method: str) -> None:
    client = await _reports(services)
    async with authlib_client(services, client, method=method) as oauth:
        token = await oauth.fetch_token("/token", grant_type="client_credentials")
    assert token["token_type"] == "Bearer"
    assert "refresh_token" not in token  # RFC 6749 §4.4.3
    assert token["scope"] == "reports:read reports:write"
    claims = claims_of(token["access_token"])
    assert claims["sub"] == claims["client_id"] == client.client_id
    assert claims["aud"] == "reports"
    assert "sid" not in claims
    assert header_of(token["access_token"])["typ"] == "at+jwt"


async def test_a_narrower_scope_is_granted_a_wider_one_refused(services: Services) -> None:
    client = await _reports(services)
    async with authlib_client(services, client) as oauth:
        token = await oauth.fetch_token(
            "/token", grant_type="client_credentials", scope="reports:read"
        )
        assert claims_of(token["access_token"])["scope"] == "reports:read"
        with pytest.raises(AuthlibError) as refused:
            await oauth.fetch_token(
                "/token", grant_type="client_credentials", scope="reports:read admin"
            )
    assert refused.value.error == "invalid_scope"


async def test_a_wrong_secret_is_invalid_client_with_a_basic_challenge(
    services: Services, audit: AuditCapture
) -> None:
    client = await _reports(services)
    audit.clear()
    r = await services.auth.post(
        "/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, "x" * 43)
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")
    [event] = audit.named("client.token")
    assert (event["outcome"], event["reason"]) == ("failure", "invalid_client")
    # A post-body attempt: 401 too, no Basic challenge needed.
    r = await services.auth.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": "nope",
        },
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "client_credentials"},  # no client at all
        {"grant_type": "client_credentials", "client_id": "no-such-client", "client_secret": "x"},
    ],
)
async def test_no_or_unknown_client_is_invalid_client(
    services: Services, form: dict[str, str]
) -> None:
    r = await services.auth.post("/token", data=form)
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


async def test_two_authentication_methods_at_once_are_refused(services: Services) -> None:
    client = await _reports(services)
    assert client.client_secret is not None
    r = await services.auth.post(
        "/token",
        data={"grant_type": "client_credentials", "client_secret": client.client_secret},
        auth=(client.client_id, client.client_secret),
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


async def test_malformed_basic_header_is_a_400(services: Services) -> None:
    r = await services.auth.post(
        "/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic %%%"},
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"
    no_colon = base64.b64encode(b"justanid").decode()
    r = await services.auth.post(
        "/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {no_colon}"},
    )
    assert r.status_code == 400


async def test_a_client_not_registered_for_the_grant_is_unauthorized(services: Services) -> None:
    client = await register(
        services,
        grant_types=["authorization_code"],
        redirect_uris=["https://app.example/cb"],
    )
    async with authlib_client(services, client) as oauth:
        with pytest.raises(AuthlibError) as refused:
            await oauth.fetch_token("/token", grant_type="client_credentials")
    assert refused.value.error == "unauthorized_client"


async def test_a_client_token_is_never_a_user_token_at_the_user_service(
    services: Services,
) -> None:
    # Registered for the user service's own audience, the token still lacks
    # a session and a user: /users/me refuses it, and /internal/* takes
    # service tokens of the auth service only.
    client = await _reports(services, audience="user-service", scopes=["profiles:write"])
    async with authlib_client(services, client) as oauth:
        token = await oauth.fetch_token("/token", grant_type="client_credentials")
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    me = await services.user.get("/users/me", headers=bearer)
    assert me.status_code == 403
    body = new_user()
    upsert = await services.user.post(
        "/internal/profiles",
        headers=bearer,
        json={
            "id": "6f1c1c1e-1111-4111-8111-111111111111",
            "name": body["name"],
            "email": body["email"],
            "date_of_birth": "1980-04-14",
            "job_title": "x",
            "created_at": "2026-01-01T00:00:00Z",
        },
    )
    assert upsert.status_code == 403
    # Nor at the auth service's own account endpoints.
    assert (await services.auth.get("/sessions", headers=bearer)).status_code == 401


async def test_a_token_for_another_audience_is_refused_by_the_user_service(
    services: Services,
) -> None:
    client = await _reports(services)
    async with authlib_client(services, client) as oauth:
        token = await oauth.fetch_token("/token", grant_type="client_credentials")
    r = await services.user.get(
        "/users/me", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


async def test_the_secret_stays_out_of_the_audit_trail(
    services: Services, audit: AuditCapture
) -> None:
    client = await _reports(services)
    audit.clear()
    async with authlib_client(services, client) as oauth:
        token = await oauth.fetch_token("/token", grant_type="client_credentials")
    [event] = audit.named("client.token")
    assert event["outcome"] == "success"
    assert event["client_id"] == client.client_id
    assert client.client_secret not in str(audit.events)
    assert token["access_token"] not in str(audit.events)


async def test_a_deleted_client_gets_no_more_tokens(services: Services) -> None:
    client = await _reports(services)
    async with authlib_client(services, client) as oauth:
        await oauth.fetch_token("/token", grant_type="client_credentials")
        assert await services.auth_app.state.ctx.clients.remove(client.client_id)
        with pytest.raises(AuthlibError) as refused:
            await oauth.fetch_token("/token", grant_type="client_credentials")
    assert refused.value.error == "invalid_client"
