"""Dependencies of the auth service's routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

# Re-exported for routers that import their problem map with their dependencies.
from auth_service.api.problems import to_problem as to_problem
from auth_service.context import AuthContext
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


async def current_user(request: Request, ctx: Ctx) -> AccessClaims:
    claims = await authenticate(ctx.bearer, request)  # a 401 is audited there
    if claims.is_service:
        # A service token authorises service-to-service calls only; it is
        # never a user session at the public API.
        request.state.token_rejection = "service_token"  # noqa: S105 - a reason label
        audit_token_rejected(request)
        raise unauthorized("service_token", "auth-service")
    return claims


CurrentUser = Annotated[AccessClaims, Depends(current_user)]


def ip_of(request: Request) -> str:
    return client_ip(request.scope) or "unknown"


def user_agent_of(request: Request) -> str:
    return request.headers.get("user-agent", "")[:256]
