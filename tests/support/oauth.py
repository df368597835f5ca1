"""OAuth clients for tests: registered through the service's own registry,
and Authlib (a real relying party) pointed at the in-process apps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from authlib.integrations.httpx_client import AsyncOAuth2Client

from tests.conftest import Services


@dataclass(frozen=True)
class Client:
    client_id: str
    client_secret: str | None


async def register(s: Services, **kwargs: Any) -> Client:
    """Register a client as `python -m auth_service.clients create` does."""
    args: dict[str, Any] = {
        "name": "Test app",
        "redirect_uris": [],
        "grant_types": ["client_credentials"],
        "scopes": [],
        "audience": None,
        "public": False,
    }
    args.update(kwargs)
    made = await s.auth_app.state.ctx.clients.register(**args)
    return Client(made.client.client_id, made.client_secret)


def authlib_client(
    s: Services, client: Client, *, method: str = "client_secret_basic", **kwargs: Any
) -> AsyncOAuth2Client:
    """Authlib's OAuth 2 client on the auth app, over httpx's ASGI transport."""
    return AsyncOAuth2Client(
        client_id=client.client_id,
        client_secret=client.client_secret,
        token_endpoint_auth_method=method,
        transport=httpx.ASGITransport(s.auth_app),
        base_url="http://auth-service",
        **kwargs,
    )


def claims_of(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified (the tests verify signatures where it matters)."""
    out: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return out


def header_of(token: str) -> dict[str, Any]:
    return dict(jwt.get_unverified_header(token))


REDIRECT = "https://app.example/callback"


async def code_client(s: Services, *, public: bool = False, **kwargs: Any) -> Client:
    """A client registered for the code flow (and refresh tokens)."""
    args: dict[str, Any] = {
        "grant_types": ["authorization_code", "refresh_token"],
        "redirect_uris": [REDIRECT],
        "public": public,
    }
    args.update(kwargs)
    return await register(s, **args)


def code_flow_client(s: Services, client: Client, **kwargs: Any) -> AsyncOAuth2Client:
    """Authlib as the relying party of the code flow: PKCE S256, OpenID scopes."""
    args: dict[str, Any] = {
        "method": "none" if client.client_secret is None else "client_secret_basic",
        "redirect_uri": REDIRECT,
        "scope": "openid profile email",
        "code_challenge_method": "S256",
    }
    args.update(kwargs)
    return authlib_client(s, client, **args)


async def approve_as(s: Services, authorize_url: str, tokens: dict[str, str]) -> str:
    """Follow GET /authorize to the page's request id, then continue as the
    signed-in user (what the page's script does); returns the redirect URL."""
    r = await s.auth.get(authorize_url)
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    assert location.startswith("/?authorize="), location
    request_id = location.removeprefix("/?authorize=")
    r = await s.auth.post(
        "/authorize/continue",
        json={"request_id": request_id},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert r.status_code == 200, r.text
    redirect_to: str = r.json()["redirect_to"]
    return redirect_to
