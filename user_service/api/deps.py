"""Dependencies of the user service: who is calling, and may they."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from shared.claims import AccessClaims
from shared.problems import Problem
from user_service.context import UserContext

REALM = "user-service"


def get_ctx(request: Request) -> UserContext:
    ctx: UserContext = request.app.state.ctx
    return ctx


Ctx = Annotated[UserContext, Depends(get_ctx)]


def forbidden(request: Request, reason: str, detail: str) -> Problem:
    request.state.access_denied = reason
    return Problem(
        403,
        "Forbidden",
        detail,
        slug="forbidden",
        headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope"'},
    )


async def current_user(request: Request, ctx: Ctx) -> AccessClaims:
    """A user's access token; service tokens are refused here."""
    claims = await ctx.bearer(request)
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
        claims = await ctx.bearer(request)
        if not claims.is_service or claims.client_id != ctx.settings.service_client_id:
            raise forbidden(request, "not_a_service", "This endpoint is for services only.")
        if scope not in claims.scopes:
            raise forbidden(request, "missing_scope", f"The token lacks the scope {scope}.")
        return claims

    return dependency


def is_admin(claims: AccessClaims) -> bool:
    return "admin" in claims.roles
