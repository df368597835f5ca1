"""Minting access tokens (RFC 9068) and service tokens."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from auth_service.services.service import service

USER_CLIENT_ID = "idp-web"
SERVICE_CLIENT_ID = "auth-service"
USER_SCOPE = "openid profile"
PROFILES_WRITE = "profiles:write"


class Signer(Protocol):
    def sign(self, claims: dict[str, Any]) -> str: ...


@dataclass(frozen=True)
class IssuedAccessToken:
    token: str
    expires_in: int


@service
class TokenIssuer:
    """Signs every JWT the platform issues with the key ring's current key.

    Args:
        signer: the key ring (signs with its current key, `typ: at+jwt`).
        issuer: `iss` of every token.
        audience: `aud`: the resource server(s) the tokens are for.
        access_ttl: access token lifetime in seconds.
        service_ttl: service token lifetime in seconds.
    """

    signer: Signer
    issuer: str
    audience: str
    access_ttl: int
    service_ttl: int
    clock: Callable[[], float] = time.time
    # scope -> (token, exp): one cached token per purpose.
    _service_cache: dict[str, tuple[str, float]] = field(default_factory=dict, init=False)

    def access_token(
        self,
        *,
        user_id: str,
        sid: str,
        roles: tuple[str, ...],
        amr: tuple[str, ...],
        auth_time: int,
    ) -> IssuedAccessToken:
        now = int(self.clock())
        claims = {
            "iss": self.issuer,
            "sub": user_id,
            "aud": self.audience,
            "exp": now + self.access_ttl,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "client_id": USER_CLIENT_ID,
            "scope": USER_SCOPE,
            "sid": sid,
            "roles": list(roles),
            "amr": list(amr),
            "auth_time": auth_time,
        }
        return IssuedAccessToken(self.signer.sign(claims), self.access_ttl)

    def service_token(self, scope: str = PROFILES_WRITE) -> str:
        """A short-lived client-credentials token for calls to the user service.

        `sub == client_id` and no `sid`: RFC 9068 §2.2's shape for a token
        issued to a client for itself, which the user service tells apart from
        any user token. One scope per token (least privilege: the token that
        creates profiles cannot delete them). Reused until a quarter of its
        life is left.
        """
        now = self.clock()
        cached = self._service_cache.get(scope)
        if cached and cached[1] - now > self.service_ttl / 4:
            return cached[0]
        exp = int(now) + self.service_ttl
        token = self.signer.sign(
            {
                "iss": self.issuer,
                "sub": SERVICE_CLIENT_ID,
                "aud": self.audience,
                "exp": exp,
                "iat": int(now),
                "jti": secrets.token_urlsafe(16),
                "client_id": SERVICE_CLIENT_ID,
                "scope": scope,
            }
        )
        self._service_cache[scope] = (token, float(exp))
        return token
