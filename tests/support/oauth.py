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
