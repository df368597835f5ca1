"""JWKS (RFC 7517) and authorization-server metadata (RFC 8414)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from auth_service.api.deps import Ctx

router = APIRouter(tags=["discovery"])

# RFC 6749 §2.3.1's two secret methods; "none" is a public client (PKCE).
_CLIENT_AUTH = ["none", "client_secret_basic", "client_secret_post"]


class JWKSetResponse(JSONResponse):
    # RFC 7517 §8.5.1; as the response class, the OpenAPI document says so too.
    media_type = "application/jwk-set+json"


@router.get("/.well-known/jwks.json", summary="Public signing keys", response_class=JWKSetResponse)
async def jwks(ctx: Ctx) -> JWKSetResponse:
    return JWKSetResponse(
        # JWKS_MAX_AGE_SECONDS: short enough that caches that ignore unknown-kid
        # refetch still learn a new key before it signs (the activation delay
        # is checked to be longer) and forget a removed one soon.
        ctx.keyring.jwks(),
        headers={"Cache-Control": f"public, max-age={ctx.settings.jwks_max_age_seconds}"},
    )


@router.get("/.well-known/openid-configuration", summary="Issuer metadata")
@router.get("/.well-known/oauth-authorization-server", include_in_schema=False)
async def metadata(ctx: Ctx) -> JSONResponse:
    iss = ctx.settings.issuer.rstrip("/")
    body: dict[str, Any] = {
        "issuer": iss,
        "jwks_uri": f"{iss}/.well-known/jwks.json",
        "token_endpoint": f"{iss}/token",
        # RFC 7009 / RFC 8414 §2: public clients revoke with their client_id
        # alone; registered confidential clients authenticate.
        "revocation_endpoint": f"{iss}/revoke",
        "revocation_endpoint_auth_methods_supported": _CLIENT_AUTH,
        "introspection_endpoint": f"{iss}/introspect",
        "introspection_endpoint_auth_methods_supported": _CLIENT_AUTH[1:],
        "authorization_endpoint": f"{iss}/authorize",
        "userinfo_endpoint": f"{iss}/userinfo",
        "grant_types_supported": [
            "authorization_code",
            "client_credentials",
            "refresh_token",
            "password",
        ],
        # Code flow only, with PKCE S256 (RFC 9700 §2.1.1): no implicit or
        # hybrid response types, no `plain` challenges.
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": _CLIENT_AUTH,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email"],
        "claims_supported": [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "jti",
            "sid",
            "roles",
            "amr",
            "auth_time",
            "nonce",
            "at_hash",
            "azp",
            "scope",
            "client_id",
            "name",
            "birthdate",
            "email",
            "email_verified",
        ],
        # RFC 9207: the code comes back with `iss`, against mix-up attacks.
        "authorization_response_iss_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "access_token_signing_alg_values_supported": ["RS256"],
    }
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=300"})
