"""Dependencies of the auth service's routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

# Re-exported for routers that import their problem map with their dependencies.
from auth_service.api.problems import to_problem as to_problem
from auth_service.context import AuthContext
from auth_service.services.tokens import USER_CLIENT_ID
from shared.access.bearer import unauthorized
from shared.audit.access import audit_token_rejected, authenticate
from shared.http.middleware import client_ip
from shared.tokens.claims import AccessClaims


def get_ctx(request: Request) -> AuthContext:
    ctx: AuthContext = request.app.state.ctx
    return ctx


async def _ctx(request: Request) -> AuthContext:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker
    # thread, a thread hop per request for one attribute read (bench/README.md).
    return get_ctx(request)


Ctx = Annotated[AuthContext, Depends(_ctx)]


def _refuse(request: Request, reason: str) -> Exception:
    request.state.token_rejection = reason
    audit_token_rejected(request)
    return unauthorized(reason, "auth-service")


async def signed_in_user(request: Request, ctx: Ctx) -> AccessClaims:
    """A user's access token, for the page or for another application (`/userinfo`)."""
    claims = await authenticate(ctx.bearer, request)  # a 401 is audited there
    if claims.is_service:
        # A service token authorises service-to-service calls only; it is
        # never a user session at the public API.
        raise _refuse(request, "service_token")
    return claims


async def current_user(request: Request, ctx: Ctx) -> AccessClaims:
    """A user's access token issued to the platform's own page (`idp-web`).

    Another application's token for the same user stops here: signing in to
    an app lets it read what the user granted (`/userinfo`, the user
    service), never change the password, add passkeys or end sessions.
    """
    claims = await signed_in_user(request, ctx)
    if claims.client_id != USER_CLIENT_ID:
        raise _refuse(request, "other_client")
    return claims


CurrentUser = Annotated[AccessClaims, Depends(current_user)]
SignedInUser = Annotated[AccessClaims, Depends(signed_in_user)]


def ip_of(request: Request) -> str:
    return client_ip(request.scope) or "unknown"


def user_agent_of(request: Request) -> str:
    return request.headers.get("user-agent", "")[:256]
