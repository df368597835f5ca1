"""GET /userinfo (OpenID Connect Core §5.3): the signed-in user's claims, by scope."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from auth_service.api.auditing import audited
from auth_service.api.deps import Ctx, SignedInUser, to_problem
from auth_service.services.oauth.errors import OAuthProtocolError
from shared.access.bearer import unauthorized
from shared.http.openapi import problem_responses
from shared.http.problems import Problem

router = APIRouter(tags=["oauth"])


def _userinfo_problem(exc: Exception) -> Problem:
    # RFC 6750 §3.1: the bearer challenge says what was wrong.
    if isinstance(exc, OAuthProtocolError) and exc.error == "insufficient_scope":
        return Problem(
            403,
            "Forbidden",
            exc.description,
            slug="forbidden",
            headers={"WWW-Authenticate": 'Bearer realm="auth-service", error="insufficient_scope"'},
        )
    if isinstance(exc, OAuthProtocolError):
        return unauthorized("invalid_token", "auth-service")
    return to_problem(exc)


@router.get(
    "/userinfo",
    responses=problem_responses(401, 403, 503),
    summary="OpenID Connect UserInfo: sub, and name/birthdate (profile), email (email)",
)
@router.post("/userinfo", include_in_schema=False)  # OIDC Core §5.3.1: GET and POST
async def userinfo(request: Request, claims: SignedInUser, ctx: Ctx) -> Any:
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    async with audited(
        "userinfo",
        request,
        user_id=claims.sub,
        session_id=claims.sid,
        denied=True,
        problem=_userinfo_problem,
    ) as audit:
        body = await ctx.userinfo.claims(token, claims)
        audit.success(client_id=claims.client_id)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
