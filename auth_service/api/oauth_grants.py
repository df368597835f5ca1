"""The grants of POST /token for registered clients: client_credentials,
authorization_code, and refresh_token presented by a registered client."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from auth_service.api.auditing import audited
from auth_service.api.client_auth import (
    authenticate_client,
    oauth_problem,
    presented_credentials,
)
from auth_service.api.deps import ip_of, to_problem, user_agent_of
from auth_service.api.oauth_forms import NO_STORE
from auth_service.context import AuthContext
from auth_service.services.oauth.errors import OAuthProtocolError
from auth_service.services.tokens import USER_CLIENT_ID
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


async def authorization_code(
    request: Request, ctx: AuthContext, fields: dict[str, str]
) -> JSONResponse:
    """RFC 6749 §4.1.3 with RFC 7636 §4.5: the code, its redirect URI and the
    PKCE verifier, for access, refresh (if registered) and ID tokens."""
    async with audited("oauth.code", request, problem=grant_problem) as audit:
        client = await authenticate_client(request, fields, ctx.clients)
        grant = await ctx.authorizations.exchange(
            client,
            code=fields.get("code", ""),
            redirect_uri=fields.get("redirect_uri", ""),
            code_verifier=fields.get("code_verifier", ""),
            ip=ip_of(request),
            user_agent=user_agent_of(request),
        )
        audit.success(user_id=grant.user_id, session_id=grant.sid, client_id=client.client_id)
    body: dict[str, object] = {
        "access_token": grant.access_token,
        "token_type": "Bearer",
        "expires_in": grant.expires_in,
        "scope": grant.scope,
    }
    if grant.refresh_token is not None:
        body["refresh_token"] = grant.refresh_token
    if grant.id_token is not None:
        body["id_token"] = grant.id_token
    return JSONResponse(body, headers=NO_STORE)


async def refreshing_client(
    request: Request, ctx: AuthContext, fields: dict[str, str]
) -> str | None:
    """The client a refresh_token request is from (RFC 6749 §6).

    The page (`idp-web`, or no client named) is a public client as before.
    A registered client authenticates (a public one names itself) and must
    be registered for the refresh_token grant.

    Raises:
        OAuthProtocolError: bad client credentials, or the grant not allowed.
    """
    presented = presented_credentials(request, fields)
    if presented is None:
        return None
    if presented.secret is None and (
        presented.client_id == USER_CLIENT_ID or await ctx.clients.get(presented.client_id) is None
    ):
        # The page, or an id nobody registered: it owns no token, and the
        # rotation answers invalid_grant (wrong client) without a change.
        return presented.client_id
    client = await ctx.clients.authenticate(presented.client_id, presented.secret)
    if "refresh_token" not in client.grant_type_set:
        raise OAuthProtocolError("unauthorized_client", "This client may not refresh tokens.")
    return client.client_id
