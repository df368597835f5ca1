"""POST /introspect: OAuth 2.0 Token Introspection (RFC 7662), for registered clients."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from auth_service.api.auditing import audited
from auth_service.api.client_auth import authenticate_client
from auth_service.api.deps import Ctx
from auth_service.api.oauth_forms import NO_STORE, form_openapi, read_form
from auth_service.api.oauth_grants import grant_problem
from auth_service.services.oauth.errors import InvalidClient, OAuthProtocolError

router = APIRouter(tags=["tokens"])

# As POST /revoke: room for our largest token, a 400 (not a 413) beyond it.
_MAX_FIELD = 4096


@router.post(
    "/introspect",
    summary="Is this token active? (RFC 7662; client authentication required)",
    openapi_extra=form_openapi(
        required=["token"],
        properties={
            "token": {"type": "string", "maxLength": _MAX_FIELD},
            "token_type_hint": {
                "type": "string",
                "maxLength": 64,
                "examples": ["access_token", "refresh_token"],
            },
            "client_id": {"type": "string", "maxLength": 128},
            "client_secret": {"type": "string", "maxLength": 128, "format": "password"},
        },
        responses={
            "200": {"description": "RFC 7662 §2.2 answer", "content": {"application/json": {}}},
            "401": {"description": "invalid_client", "content": {"application/json": {}}},
        },
    ),
)
async def introspect(request: Request, ctx: Ctx) -> Any:
    fields = await read_form(request, max_field=_MAX_FIELD)
    if isinstance(fields, JSONResponse):
        return fields
    async with audited("token.introspect", request, problem=grant_problem) as audit:
        client = await authenticate_client(request, fields, ctx.clients)
        if client.is_public:
            # RFC 7662 §2.1: the endpoint is for clients that can authenticate.
            raise InvalidClient("Introspection needs a confidential client.")
        token = fields.get("token", "")
        if len(fields.get("token_type_hint", "")) > 64:
            raise OAuthProtocolError("invalid_request", "A parameter is too long.")
        if not token:
            raise OAuthProtocolError("invalid_request", "token is required.")
        answer = await ctx.introspector.introspect(
            client, token, hint=fields.get("token_type_hint")
        )
        audit.success(client_id=client.client_id, active=bool(answer["active"]))
    return JSONResponse(answer, headers=NO_STORE)
