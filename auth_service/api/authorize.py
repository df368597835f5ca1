"""GET /authorize and the page's steps that answer it (RFC 6749 §4.1, OIDC Core §3.1.2).

The endpoint validates the request and sends the browser to the page (`/?authorize=<id>`),
which signs the user in as it always does (password, passkey, second
factor), then posts that id with its fresh access token to
`/authorize/continue`; the answer is the client's redirect URI with a code.
An unknown client or redirect URI is answered here, never redirected to.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from auth_service.api.auditing import audited
from auth_service.api.deps import Ctx, CurrentUser, ip_of, to_problem
from auth_service.schemas.oauth import AuthorizeRedirect, AuthorizeStep, PendingAuthorization
from auth_service.services.oauth.authorization import with_query
from auth_service.services.oauth.errors import InvalidRedirect, OAuthProtocolError, RedirectedError
from shared.audit.events import audit_event
from shared.http.openapi import problem_responses
from shared.http.problems import Problem

router = APIRouter(tags=["oauth"])

_NO_STORE = {"Cache-Control": "no-store"}
_MAX_PARAM = 2048


def _authorize_problem(exc: Exception) -> Problem:
    if isinstance(exc, InvalidRedirect):
        return Problem(400, "Invalid authorization request", exc.description, slug="invalid-client")
    if isinstance(exc, OAuthProtocolError):
        # The page's steps speak RFC 9457 like the rest of its API.
        return Problem(400, "Bad request", exc.description, slug="invalid-request")
    return to_problem(exc)


@router.get(
    "/authorize",
    status_code=303,
    response_class=Response,
    responses=problem_responses(400, 503),
    summary="Start signing in to another application (code flow with PKCE S256)",
)
async def authorize(request: Request, ctx: Ctx) -> Response:
    items = request.query_params.multi_items()
    names = [name for name, _ in items]
    repeated = frozenset(name for name in names if names.count(name) > 1)
    params = {name: value for name, value in items if len(value) <= _MAX_PARAM}
    if len(params) != len(dict(items)):
        raise Problem(400, "Invalid authorization request", "A parameter is too long.")
    async with audited(
        "oauth.authorize", request, audits=(InvalidRedirect,), problem=_authorize_problem
    ) as audit:
        try:
            request_id = await ctx.authorizations.begin(params, repeated=repeated)
        except RedirectedError as exc:
            audit.hand_over()  # audited here: a failure that still redirects
            audit_event(
                "oauth.authorize",
                outcome="failure",
                request=request,
                reason=exc.reason,
                client_id=params.get("client_id", "")[:64],
            )
            back = {"error": exc.error, "error_description": exc.description}
            if exc.state is not None:
                back["state"] = exc.state
            back["iss"] = ctx.settings.issuer.rstrip("/")
            return RedirectResponse(with_query(exc.redirect_uri, back), 303, headers=_NO_STORE)
        audit.success(client_id=params.get("client_id"))
    return RedirectResponse(f"/?authorize={request_id}", 303, headers=_NO_STORE)


@router.get(
    "/authorize/requests/{request_id}",
    response_model=PendingAuthorization,
    responses=problem_responses(404),
    summary="Which application a pending sign-in is for (the page shows it)",
)
async def pending(
    request_id: Annotated[str, Path(max_length=128)], ctx: Ctx
) -> PendingAuthorization:
    found = await ctx.authorizations.pending(request_id)
    if found is None:
        raise Problem(404, "Not found", "No such sign-in request; it may have expired.")
    return PendingAuthorization(client_name=found.client_name, scope=found.scope)


@router.post(
    "/authorize/continue",
    response_model=AuthorizeRedirect,
    responses=problem_responses(400, 401, 403, 422, 503),
    summary="The signed-in user continues to the application: its redirect URI with a code",
)
async def approve(
    body: AuthorizeStep, request: Request, claims: CurrentUser, ctx: Ctx
) -> JSONResponse:
    async with audited(
        "oauth.approve",
        request,
        user_id=claims.sub,
        session_id=claims.sid,
        problem=_authorize_problem,
    ) as audit:
        to = await ctx.authorizations.approve(
            body.request_id,
            user_id=claims.sub,
            auth_time=claims.auth_time or claims.iat,
            amr=claims.amr,
            ip=ip_of(request),
        )
        audit.success()
    return JSONResponse({"redirect_to": to}, headers=_NO_STORE)


@router.post(
    "/authorize/deny",
    response_model=AuthorizeRedirect,
    responses=problem_responses(400, 422),
    summary="The user declines: the application hears access_denied",
)
async def deny(body: AuthorizeStep, request: Request, ctx: Ctx) -> JSONResponse:
    async with audited("oauth.approve", request, denied=True, problem=_authorize_problem) as audit:
        to = await ctx.authorizations.deny(body.request_id)
        audit.success(declined=True)
    return JSONResponse({"redirect_to": to}, headers=_NO_STORE)
