"""Password login, the OAuth2 token endpoint, refresh and logout."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from auth_service.api import oauth_grants
from auth_service.api.auditing import audited, audited_failure
from auth_service.api.client_auth import oauth_problem
from auth_service.api.deps import Ctx, CurrentUser, get_ctx, ip_of, user_agent_of
from auth_service.api.mfa import begin_mfa
from auth_service.api.oauth_forms import (
    NO_STORE,
    OAuthError,
    form_openapi,
    oauth_error,
    rate_limited,
    read_form,
    token_json,
    token_response,
)
from auth_service.api.problems import to_problem
from auth_service.errors import (
    EmailNotVerified,
    InvalidCredentials,
    RateLimited,
    RefreshTokenInvalid,
    RefreshTokenReused,
    RefreshTokenWrongClient,
    SecondFactorRequired,
)
from auth_service.schemas.accounts import LoginRequest, RefreshRequest, TokenResponse
from auth_service.schemas.webauthn import MfaRequiredResponse
from auth_service.services.authentication import TokenGrant
from auth_service.services.oauth.errors import OAuthProtocolError
from auth_service.services.tokens import USER_CLIENT_ID
from shared.http.openapi import problem_responses
from shared.http.problems import Problem
from shared.http.routes import FastPathRoute

router = APIRouter(tags=["tokens"])


def _no_store(response: Response) -> None:
    response.headers.update(NO_STORE)


@router.post(
    "/login",
    response_model=TokenResponse | MfaRequiredResponse,
    responses=problem_responses(401, 403, 422, 429, 503),
    summary="Log in with email and password (then POST /login/mfa if the account has a passkey)",
)
async def login(
    body: LoginRequest, request: Request, response: Response, ctx: Ctx
) -> TokenResponse | MfaRequiredResponse:
    _no_store(response)
    async with audited("login", request) as audit:
        try:
            grant = await ctx.authenticator.login_password(
                body.email,
                body.password.get_secret_value(),
                ip=ip_of(request),
                user_agent=user_agent_of(request),
            )
        except SecondFactorRequired as exc:
            audit.hand_over()  # audited as mfa.challenge
            return await begin_mfa(request, ctx, exc.user_id)
        audit.success(user_id=grant.user_id, session_id=grant.sid, method="password")
    return token_response(grant)


class _RefreshRoute(FastPathRoute):
    """`POST /token/refresh` without FastAPI's per-request dependency solving.

    A refresh is the auth service's hot write (bench/README.md, target 5):
    solving the declared body and dependency cost ~8% of its CPU. The fast
    path does what they declare: it reads the body as FastAPI does (a read
    error is FastAPI's 400, an HTTPException passes through), validates it
    with the declared model in one pass, and calls the endpoint. Anything it
    would not answer identically goes to FastAPI's own handler
    (`FastPathRoute`; the body is cached on the request, so it is not read
    twice): a content type other than plain `application/json`, a body the
    model refuses (FastAPI's 422 then names the fields).
    tests/api/test_refresh_route.py holds both to the same answers.
    """

    async def fast(self, request: Request) -> Response | None:
        content_type = request.headers.get("content-type", "")
        if content_type.partition(";")[0].strip().lower() != "application/json":
            return None
        try:
            raw = await request.body()
        except HTTPException:
            raise
        except Exception as exc:  # as FastAPI's body reader answers it
            raise HTTPException(400, "There was an error parsing the body") from exc
        try:
            body = RefreshRequest.model_validate_json(raw)
        except ValidationError:
            return None
        return await refresh(body, request, get_ctx(request))


async def refresh(body: RefreshRequest, request: Request, ctx: Ctx) -> Response:
    async with audited("token.refresh", request) as audit:
        if body.client_id not in (None, USER_CLIENT_ID) and await ctx.clients.get(body.client_id):
            # A registered application authenticates at POST /token (RFC 6749
            # §6); this JSON route is the page's, and takes no client secret.
            raise RefreshTokenWrongClient
        grant = await ctx.authenticator.refresh(
            body.refresh_token,
            ip=ip_of(request),
            user_agent=user_agent_of(request),
            client_id=body.client_id,
        )
        audit.success(user_id=grant.user_id, session_id=grant.sid)
    return token_json(grant)


router.add_api_route(
    "/token/refresh",
    refresh,
    methods=["POST"],
    response_model=TokenResponse,
    responses=problem_responses(401, 422, 429, 503),
    summary="Rotate a refresh token",
    route_class_override=_RefreshRoute,
)


@router.post(
    "/logout", status_code=204, responses=problem_responses(401, 503), summary="End this session"
)
async def logout(request: Request, claims: CurrentUser, ctx: Ctx) -> Response:
    assert claims.sid is not None  # current_user admits user tokens only
    async with audited("logout", request, user_id=claims.sub, session_id=claims.sid):
        await ctx.sessions.revoke(claims.sid)
    return Response(status_code=204, headers=NO_STORE)


_MAX_FIELD = 1024


def _oauth_problem(exc: Exception) -> Problem:
    """The token endpoint's answers to domain errors: RFC 6749 §5.2's shape."""
    if isinstance(exc, InvalidCredentials | RefreshTokenInvalid | RefreshTokenReused):
        return OAuthError(400, "invalid_grant", "The credentials or refresh token are not valid.")
    if isinstance(exc, SecondFactorRequired):
        # The password grant has no second step (RFC 6749 §4.3): an account
        # with a passkey gets no tokens here, only a pointer to the flow that
        # can finish the login.
        return OAuthError(
            400,
            "invalid_grant",
            "This account requires a second factor: use POST /login, then POST /login/mfa.",
        )
    if isinstance(exc, EmailNotVerified):
        return OAuthError(
            400,
            "invalid_grant",
            "The account's email address is not verified yet; a link has been mailed to it.",
        )
    if isinstance(exc, RateLimited):
        return rate_limited(exc)
    return to_problem(exc)


@router.post(
    "/token",
    response_model=TokenResponse,
    summary="OAuth2 token endpoint (RFC 6749): code, client credentials, refresh, password",
    openapi_extra=form_openapi(
        required=["grant_type"],
        properties={
            "grant_type": {
                "type": "string",
                "enum": ["password", "refresh_token", "client_credentials", "authorization_code"],
            },
            "username": {"type": "string", "maxLength": 320},
            "password": {"type": "string", "maxLength": 1024, "format": "password"},
            "refresh_token": {"type": "string", "maxLength": 512},
            "scope": {"type": "string", "maxLength": 256},
            "client_id": {"type": "string", "maxLength": 128},
            "client_secret": {"type": "string", "maxLength": 128, "format": "password"},
            "code": {"type": "string", "maxLength": 128},
            "redirect_uri": {"type": "string", "maxLength": 1024},
            "code_verifier": {"type": "string", "maxLength": 128},
        },
        responses={"401": {"description": "RFC 6749 error", "content": {"application/json": {}}}},
    ),
)
async def token(request: Request, ctx: Ctx) -> Any:
    fields = await read_form(request, max_field=_MAX_FIELD)
    if isinstance(fields, JSONResponse):
        return fields
    grant_type = fields.get("grant_type", "")
    if grant_type == "client_credentials":
        return await oauth_grants.client_credentials(request, ctx, fields)
    if grant_type == "authorization_code":
        return await oauth_grants.authorization_code(request, ctx, fields)
    issue: Callable[..., Awaitable[TokenGrant]]
    if grant_type == "password":
        username, password = fields.get("username", ""), fields.get("password", "")
        if not username or not password:
            return oauth_error(400, "invalid_request", "username and password are required.")
        issue = partial(ctx.authenticator.login_password, username, password)
    elif grant_type == "refresh_token":
        rt = fields.get("refresh_token", "")
        if not rt:
            return oauth_error(400, "invalid_request", "refresh_token is required.")
        try:
            client_id = await oauth_grants.refreshing_client(request, ctx, fields)
        except OAuthProtocolError as exc:
            audited_failure("token.refresh", exc, request, grant=grant_type)
            return oauth_problem(exc).response()
        # RFC 6749 §6: the token must have been issued to this client.
        issue = partial(ctx.authenticator.refresh, rt, client_id=client_id)
    else:
        return oauth_error(
            400,
            "unsupported_grant_type",
            "Supported: authorization_code, client_credentials, refresh_token, password.",
        )
    event = "token.refresh" if grant_type == "refresh_token" else "login"
    async with audited(event, request, problem=_oauth_problem, grant=grant_type) as audit:
        grant = await issue(ip=ip_of(request), user_agent=user_agent_of(request))
        audit.success(user_id=grant.user_id, session_id=grant.sid)
    return token_json(grant)
