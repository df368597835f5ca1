"""Dependencies of the user service: who is calling, and may they."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from shared.audit.access import audit_access_denied, authenticate
from shared.http.problems import Problem
from shared.tokens.claims import AccessClaims
from user_service.context import UserContext

REALM = "user-service"


def get_ctx(request: Request) -> UserContext:
    ctx: UserContext = request.app.state.ctx
    return ctx


async def _ctx(request: Request) -> UserContext:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker
    # thread, a thread hop per request for one attribute read (bench/README.md).
    return get_ctx(request)


Ctx = Annotated[UserContext, Depends(_ctx)]


def forbidden(request: Request, reason: str, detail: str) -> Problem:
    """A 403, audited as `access.denied` with `reason` (the client sees `detail`)."""
    request.state.access_denied = reason
    audit_access_denied(request, reason)
    return Problem(
        403,
        "Forbidden",
        detail,
        slug="forbidden",
        headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope"'},
    )


async def current_user(request: Request, ctx: Ctx) -> AccessClaims:
    """A user's access token; service tokens are refused here."""
    claims = await authenticate(ctx.bearer, request)  # a 401 is audited there
    if claims.is_service or claims.sid is None:
        raise forbidden(request, "service_token", "This endpoint needs a user's access token.")
    return claims


CurrentUser = Annotated[AccessClaims, Depends(current_user)]


def require_service(scope: str) -> Callable[[Request, UserContext], Awaitable[AccessClaims]]:
    """A service token from the configured client carrying `scope`.

    A user token never passes, whatever scopes it claims: the user service
    accepts only tokens shaped as client-credentials tokens of the auth service.
    """

    async def dependency(request: Request, ctx: Ctx) -> AccessClaims:
        claims = await authenticate(ctx.bearer, request)
        if not claims.is_service or claims.client_id != ctx.settings.service_client_id:
            raise forbidden(request, "not_a_service", "This endpoint is for services only.")
        if scope not in claims.scopes:
            raise forbidden(request, "missing_scope", f"The token lacks the scope {scope}.")
        return claims

    return dependency


def is_admin(claims: AccessClaims) -> bool:
    return "admin" in claims.roles
