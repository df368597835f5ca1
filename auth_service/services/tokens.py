"""Minting access tokens (RFC 9068) and service tokens."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

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


class TokenIssuer:
    """Signs every JWT the platform issues with the key ring's current key.

    Args:
        signer: the key ring (signs with its current key, `typ: at+jwt`).
        issuer: `iss` of every token.
        audience: `aud`: the resource server(s) the tokens are for.
        access_ttl: access token lifetime in seconds.
        service_ttl: service token lifetime in seconds.
    """

    def __init__(
        self,
        *,
        signer: Signer,
        issuer: str,
        audience: str,
        access_ttl: int,
        service_ttl: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._signer = signer
        self._iss = issuer
        self._aud = audience
        self._access_ttl = access_ttl
        self._service_ttl = service_ttl
        self._clock = clock
        self._service_cache: tuple[str, float] | None = None

    def access_token(
        self,
        *,
        user_id: str,
        sid: str,
        roles: tuple[str, ...],
        amr: tuple[str, ...],
        auth_time: int,
    ) -> IssuedAccessToken:
        now = int(self._clock())
        claims = {
            "iss": self._iss,
            "sub": user_id,
            "aud": self._aud,
            "exp": now + self._access_ttl,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "client_id": USER_CLIENT_ID,
            "scope": USER_SCOPE,
            "sid": sid,
            "roles": list(roles),
            "amr": list(amr),
            "auth_time": auth_time,
        }
        return IssuedAccessToken(self._signer.sign(claims), self._access_ttl)

    def service_token(self) -> str:
        """A short-lived client-credentials token for calls to the user service.

        `sub == client_id` and no `sid`: RFC 9068 §2.2's shape for a token
        issued to a client for itself, which the user service tells apart from
        any user token. Reused until a quarter of its life is left.
        """
        now = self._clock()
        cached = self._service_cache
        if cached and cached[1] - now > self._service_ttl / 4:
            return cached[0]
        exp = int(now) + self._service_ttl
        token = self._signer.sign(
            {
                "iss": self._iss,
                "sub": SERVICE_CLIENT_ID,
                "aud": self._aud,
                "exp": exp,
                "iat": int(now),
                "jti": secrets.token_urlsafe(16),
                "client_id": SERVICE_CLIENT_ID,
                "scope": PROFILES_WRITE,
            }
        )
        self._service_cache = (token, float(exp))
        return token
