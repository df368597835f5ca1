"""The grants of POST /token for registered clients: client_credentials,
authorization_code, and refresh_token presented by a registered client."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from auth_service.api.auditing import audited
from auth_service.api.client_auth import authenticate_client, oauth_problem
from auth_service.api.deps import to_problem
from auth_service.api.oauth_forms import NO_STORE, OAuthError
from auth_service.context import AuthContext
from auth_service.services.oauth.errors import OAuthProtocolError
from shared.http.problems import Problem


def grant_problem(exc: Exception) -> Problem:
    """RFC 6749 §5.2's answers for the grants' domain errors; the rest as usual."""
    if isinstance(exc, OAuthProtocolError):
        return oauth_problem(exc)
    return to_problem(exc)


async def client_credentials(
    request: Request, ctx: AuthContext, fields: dict[str, str]
) -> JSONResponse:
    """RFC 6749 §4.4: an authenticated confidential client's token for itself."""
    async with audited("client.token", request, problem=grant_problem) as audit:
        client = await authenticate_client(request, fields, ctx.clients)
        grant = ctx.client_grants.issue(client, scope=fields.get("scope"))
        audit.success(client_id=client.client_id, scope=grant.scope)
    body = {
        "access_token": grant.access_token,
        "token_type": "Bearer",
        "expires_in": grant.expires_in,
        "scope": grant.scope,
    }
    return JSONResponse(body, headers=NO_STORE)


__all__ = ["OAuthError", "client_credentials", "grant_problem"]
