"""Dependencies of the auth service's routers, and domain-error mapping."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from auth_service.context import AuthContext
from auth_service.errors import (
    EmailTaken,
    InvalidCredentials,
    RateLimited,
    RefreshTokenInvalid,
    RefreshTokenReused,
    UpstreamUnavailable,
    WeakPassword,
)
from shared.access.bearer import unauthorized
from shared.audit.access import audit_token_rejected, authenticate
from shared.http.middleware import client_ip
from shared.http.problems import Problem
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


_INVALID_LOGIN = "Invalid email or password."


def to_problem(exc: Exception) -> Problem:
    """Map a domain or infrastructure error to its HTTP problem. Only the edge
    decides between 401, 409, 429 and 503."""
    if isinstance(exc, RateLimited):
        return Problem(
            429,
            "Too Many Requests",
            "Too many attempts; retry later.",
            slug="rate-limited",
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, InvalidCredentials):
        return Problem(401, "Unauthorized", _INVALID_LOGIN, slug="invalid-credentials")
    if isinstance(exc, EmailTaken):
        return Problem(
            409, "Conflict", "An account with this email already exists.", slug="email-taken"
        )
    if isinstance(exc, WeakPassword):
        return Problem(
            422,
            "Invalid request",
            "The password does not meet the policy.",
            slug="validation",
            errors=[{"field": "password", "message": m} for m in exc.problems],
        )
    if isinstance(exc, RefreshTokenReused | RefreshTokenInvalid):
        # Same answer for both: the client cannot tell (or care) which.
        return Problem(401, "Unauthorized", "The refresh token is not valid.", slug="invalid-grant")
    if isinstance(exc, UpstreamUnavailable | RedisError | SQLAlchemyError | OSError):
        return Problem(
            503,
            "Service Unavailable",
            "A dependency is unavailable; nothing was changed. Retry shortly.",
            slug="unavailable",
            headers={"Retry-After": "2"},
        )
    raise exc
