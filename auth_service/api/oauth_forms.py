"""The OAuth endpoints' common edge: form parsing, token and error bodies."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from auth_service.errors import RateLimited
from auth_service.schemas.accounts import TokenResponse
from auth_service.services.authentication import TokenGrant
from shared.http.problems import Problem

# RFC 6749 §5.1: token responses must not be cached by anyone.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


_FORM = "application/x-www-form-urlencoded"
_JSON_ANSWER: dict[str, Any] = {"application/json": {}}


def form_openapi(
    *, required: list[str], properties: dict[str, Any], responses: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The `openapi_extra` of a form-encoded OAuth endpoint.

    FastAPI cannot describe a body the endpoint reads itself (`read_form`),
    nor the RFC 6749 §5.2 error shape: both are stated here, once.
    """
    return {
        "requestBody": {
            "required": True,
            "content": {
                _FORM: {
                    "schema": {"type": "object", "required": required, "properties": properties}
                }
            },
        },
        "responses": {
            **(responses or {}),
            "400": {"description": "RFC 6749 error", "content": _JSON_ANSWER},
            "429": {"description": "Rate limited", "content": _JSON_ANSWER},
        },
    }


def token_response(grant: TokenGrant) -> TokenResponse:
    """RFC 6749 §5.1 access token response (plus the account's id)."""
    return TokenResponse(
        access_token=grant.access_token,
        expires_in=grant.expires_in,
        refresh_token=grant.refresh_token,
        scope=grant.scope,
        user_id=uuid.UUID(grant.user_id),
    )


def token_json(grant: TokenGrant) -> JSONResponse:
    """`token_response` as the response itself, with `NO_STORE`.

    The same JSON as returning the model from a route with
    `response_model=TokenResponse`, without validating what was just
    built a second time (a refresh's hot path; bench/README.md, P6).
    """
    return JSONResponse(
        {
            "access_token": grant.access_token,
            "token_type": "Bearer",
            "expires_in": grant.expires_in,
            "refresh_token": grant.refresh_token,
            "scope": grant.scope,
            "user_id": str(uuid.UUID(grant.user_id)),
        },
        headers=NO_STORE,
    )


def oauth_error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """RFC 6749 §5.2 error response (RFC 7009 §2.2.1 uses the same)."""
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={**NO_STORE, **(headers or {})},
    )


class OAuthError(Problem):
    """An RFC 6749 §5.2 error raised at the edge: the app's problem handler
    answers it in the OAuth shape its clients parse, not RFC 9457's."""

    def __init__(
        self, status: int, error: str, description: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, detail=description, headers=headers)
        self.error = error

    def response(self) -> JSONResponse:
        return oauth_error(self.status, self.error, self.detail or "", self.headers)


def rate_limited(exc: RateLimited) -> OAuthError:
    """429 in the RFC 6749 error shape, with when to retry (RFC 6585 §4)."""
    return OAuthError(
        429,
        "rate_limited",
        "Too many attempts; retry later.",
        {"Retry-After": str(exc.retry_after)},
    )


async def read_form(request: Request, *, max_field: int) -> dict[str, str] | JSONResponse:
    """The string fields of an `application/x-www-form-urlencoded` body, or
    the `invalid_request` answer for anything else (RFC 6749 §3.2)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != _FORM:
        return oauth_error(400, "invalid_request", "Use application/x-www-form-urlencoded.")
    try:
        # The part cap counts bytes; the exact bound (characters) is checked below.
        form = await request.form(max_files=0, max_fields=16, max_part_size=4 * max_field + 64)
    except Exception:
        return oauth_error(400, "invalid_request", "Malformed form body.")
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if any(len(v) > max_field for v in fields.values()):
        return oauth_error(400, "invalid_request", "A parameter is too long.")
    return fields
