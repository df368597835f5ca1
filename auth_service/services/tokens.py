"""Minting access tokens (RFC 9068) and service tokens."""

from __future__ import annotations

import base64
import hashlib
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


class IdTokenSigner(Protocol):
    def sign_id_token(self, claims: dict[str, Any]) -> str: ...


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
    # Signs OpenID Connect ID tokens (`typ: JWT`, never `at+jwt`); None: no OIDC.
    id_signer: IdTokenSigner | None = None
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
        client_id: str = USER_CLIENT_ID,
        scope: str = USER_SCOPE,
    ) -> IssuedAccessToken:
        """A user's access token: for the platform's own page (`idp-web`), or
        for another application the user signed in to (its `client_id`, the
        scopes the user granted it)."""
        now = int(self.clock())
        claims = {
            "iss": self.issuer,
            "sub": user_id,
            "aud": self.audience,
            "exp": now + self.access_ttl,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "client_id": client_id,
            "scope": scope,
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

    def client_token(self, *, client_id: str, audience: str, scope: str) -> IssuedAccessToken:
        """A client_credentials token (RFC 6749 §4.4): the client acting for itself.

        RFC 9068 §2.2: `sub` is the client's own id, and there is no `sid`:
        resource servers tell it from any user's token (`AccessClaims.is_service`),
        and the user service accepts service tokens from the auth service only.
        """
        now = int(self.clock())
        claims = {
            "iss": self.issuer,
            "sub": client_id,
            "aud": audience,
            "exp": now + self.access_ttl,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "client_id": client_id,
            "scope": scope,
        }
        return IssuedAccessToken(self.signer.sign(claims), self.access_ttl)

    def id_token(
        self,
        *,
        user_id: str,
        client_id: str,
        sid: str,
        auth_time: int,
        amr: tuple[str, ...],
        nonce: str | None,
        access_token: str,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """An OpenID Connect ID token (OIDC Core §2) for `client_id`.

        `aud` is the client alone, so no resource server that pins its own
        audience accepts it as an access token; `typ` is `JWT`, not `at+jwt`,
        for the same reason (RFC 9068 §2.1). `at_hash` binds it to the access
        token issued with it (OIDC Core §3.1.3.6).
        """
        if self.id_signer is None:
            raise RuntimeError("no ID token signer configured")
        now = int(self.clock())
        digest = hashlib.sha256(access_token.encode("ascii")).digest()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user_id,
            "aud": client_id,
            "azp": client_id,
            "exp": now + self.access_ttl,
            "iat": now,
            "auth_time": auth_time,
            "amr": list(amr),
            "sid": sid,
            "at_hash": base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode(),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        claims.update(extra or {})
        return self.id_signer.sign_id_token(claims)
