"""The UserInfo claims (OpenID Connect Core §5.3, §5.4): what the granted scopes release."""

from __future__ import annotations

from typing import Any, Protocol

from auth_service.services.oauth.errors import OAuthProtocolError
from auth_service.services.service import service
from shared.tokens.claims import AccessClaims


class _Profiles(Protocol):
    async def profile_as(self, bearer: str) -> dict[str, Any] | None: ...


@service
class UserInfo:
    """Answers `GET /userinfo` from the profile the user service holds.

    The profile is read with the caller's own access token, so the user
    service applies its own rules (revocation, audience) to it; the scopes
    decide what is released: `profile` -> name, birthdate; `email` -> email,
    email_verified.
    """

    profiles: _Profiles

    async def claims(self, token: str, access: AccessClaims) -> dict[str, Any]:
        """Raises:
        OAuthProtocolError: `insufficient_scope`, a token without `openid`;
            `invalid_token`, the user service refused the token.
        """
        scopes = access.scopes
        if "openid" not in scopes:
            raise OAuthProtocolError("insufficient_scope", "The token lacks the openid scope.")
        out: dict[str, Any] = {"sub": access.sub}
        if not scopes & {"profile", "email"}:
            return out
        profile = await self.profiles.profile_as(token)
        if profile is None or str(profile.get("id")) != access.sub:
            raise OAuthProtocolError("invalid_token", "The access token is not valid.")
        if "profile" in scopes:
            out["name"] = profile.get("name")
            out["birthdate"] = profile.get("date_of_birth")
        if "email" in scopes:
            out["email"] = profile.get("email")
            # Whether the address was proven (OpenID Connect Core §5.1): the
            # profile carries it since email verification.
            out["email_verified"] = bool(profile.get("email_verified", False))
        return out
