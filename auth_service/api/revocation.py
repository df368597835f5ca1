"""POST /revoke: OAuth 2.0 Token Revocation (RFC 7009), for the page and registered clients."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from auth_service.api.auditing import audited_failure
from auth_service.api.client_auth import oauth_problem, presented_credentials
from auth_service.api.deps import Ctx, ip_of
from auth_service.api.oauth_forms import (
    NO_STORE,
    form_openapi,
    oauth_error,
    rate_limited,
    read_form,
)
from auth_service.api.problems import to_problem
from auth_service.context import AuthContext
from auth_service.errors import RateLimited
from auth_service.services.oauth.errors import OAuthProtocolError
from auth_service.services.tokens import USER_CLIENT_ID
from shared.audit.events import audit_event

router = APIRouter(tags=["tokens"])

# Our access tokens are under 1,500 characters, refresh tokens 43. The bound
# keeps the largest valid form (4-byte characters, percent-encoded) under the
# 64 KiB body limit, so an over-long field is a 400, never a 413.
_MAX_FIELD = 4096
# Each field's own bound, as the OpenAPI document states it.
_FIELD_LIMITS = {"token_type_hint": 64, "client_id": 128}


async def _revoking_client(
    request: Request, fields: dict[str, str], ctx: AuthContext
) -> str | None:
    """The client asking, authenticated when it is a registered confidential one.

    RFC 7009 §2.1: a confidential client authenticates; a public client (the
    platform's page, `idp-web`, or a registered public client) names itself,
    and holding the token is the proof (§5). None: the page, unnamed.

    Raises:
        OAuthProtocolError: bad or missing client credentials.
    """
    presented = presented_credentials(request, fields)
    if presented is None:
        return None
    if presented.secret is None and (
        presented.client_id == USER_CLIENT_ID or await ctx.clients.get(presented.client_id) is None
    ):
        # Not a registered client: it owns no token, and the revoker answers
        # `unauthorized_client` for any token it names.
        return presented.client_id
    return (await ctx.clients.authenticate(presented.client_id, presented.secret)).client_id


@router.post(
    "/revoke",
    status_code=200,
    response_class=Response,  # RFC 7009 §2.2: an empty 200, no JSON
    summary="Revoke a refresh or access token (RFC 7009): its session ends",
    openapi_extra=form_openapi(
        required=["token"],
        properties={
            "token": {"type": "string", "maxLength": _MAX_FIELD},
            # A hint only: other values are ignored (RFC 7009 §2.1).
            "token_type_hint": {
                "type": "string",
                "maxLength": _FIELD_LIMITS["token_type_hint"],
                "examples": ["refresh_token", "access_token"],
            },
            "client_id": {"type": "string", "maxLength": _FIELD_LIMITS["client_id"]},
            "client_secret": {"type": "string", "maxLength": 128, "format": "password"},
        },
        responses={
            "200": {"description": "Revoked, or nothing to revoke (RFC 7009 §2.2)"},
            "401": {
                "description": "invalid_client: a registered client failed to authenticate",
                "content": {"application/json": {}},
            },
        },
    ),
)
async def revoke(request: Request, ctx: Ctx) -> Any:
    fields = await read_form(request, max_field=_MAX_FIELD)
    if isinstance(fields, JSONResponse):
        return fields
    token = fields.get("token", "")
    if not token:
        return oauth_error(400, "invalid_request", "token is required.")
    if any(len(fields.get(name, "")) > limit for name, limit in _FIELD_LIMITS.items()):
        return oauth_error(400, "invalid_request", "A parameter is too long.")
    try:
        client_id = await _revoking_client(request, fields, ctx)
    except OAuthProtocolError as exc:
        audited_failure("token.revoke", exc, request)
        return oauth_problem(exc).response()
    try:
        result = await ctx.revoker.revoke(
            token,
            hint=fields.get("token_type_hint"),
            client_id=client_id,
            ip=ip_of(request),
        )
    except RateLimited as exc:
        audited_failure("token.revoke", exc, request)
        return rate_limited(exc).response()
    except Exception as exc:
        raise to_problem(audited_failure("token.revoke", exc, request)) from None
    who = {"user_id": result.user_id, "session_id": result.sid}
    kind = result.kind.removesuffix("_token") if result.kind else None
    if result.outcome == "wrong_client":
        audit_event(
            "token.revoke",
            outcome="denied",
            request=request,
            reason="wrong_client",
            kind=kind,
            **who,
        )
        # RFC 7009 §2.1: the client is told; the token itself stays valid.
        return oauth_error(400, "unauthorized_client", "The token was not issued to this client.")
    revoked = result.outcome == "revoked"
    audit_event(
        "token.revoke",
        outcome="success",
        request=request,
        reason=None if revoked else "unknown_token",
        kind=kind,
        session_revoked=revoked,
        **who,
    )
    # RFC 7009 §2.2: 200 whether or not there was anything to revoke, so the
    # answer says nothing about a token the caller may have made up.
    return Response(status_code=200, headers=NO_STORE)
