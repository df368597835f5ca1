"""Token introspection (RFC 7662): a registered client asks whether a token is live.

A client learns about a token only when it has a stake in it: the token was
issued to it (`client_id`), or is meant for the audience it serves (a
resource server checking the tokens it receives). Anything else answers
`{"active": false}`, as an unknown token does (RFC 7662 §2.2: the server
may refuse to reveal a token to a client it was not meant for).
"""

from __future__ import annotations

from typing import Any, Protocol

from auth_service.errors import UpstreamUnavailable
from auth_service.models.client import OAuthClient
from auth_service.stores.sessions import SessionStore
from shared.tokens.claims import AccessClaims
from shared.tokens.verify import KeySource, KeysUnavailable, TokenRejected, TokenVerifier

INACTIVE: dict[str, Any] = {"active": False}


class _Verifier(Protocol):
    async def verify(self, token: str) -> AccessClaims: ...


class Introspector:
    """Answers RFC 7662 requests for access tokens (JWTs) and refresh tokens.

    Access tokens are verified exactly as resource servers do it (signature,
    `typ`, issuer, times, pinned audience), once per audience the platform
    serves; a token whose session was revoked is inactive, as the user
    service would refuse it.

    Args:
        keys: the key ring (the same keys the JWKS publishes).
        issuer: the expected `iss`.
        default_audience: the platform's API audience (user tokens).
        sessions: the session store (refresh tokens and revocation markers).
    """

    def __init__(
        self, *, keys: KeySource, issuer: str, default_audience: str, sessions: SessionStore
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._sessions = sessions
        self._verifiers: dict[str, _Verifier] = {}
        self._default = self._verifier(default_audience)

    def _verifier(self, audience: str) -> _Verifier:
        # Registered audiences are few (one per client at most): one verifier each.
        verifier = self._verifiers.get(audience)
        if verifier is None:
            verifier = TokenVerifier(
                key_source=self._keys, expected_issuer=self._issuer, expected_audience=audience
            )
            self._verifiers[audience] = verifier
        return verifier

    async def introspect(
        self, caller: OAuthClient, token: str, *, hint: str | None
    ) -> dict[str, Any]:
        """The RFC 7662 §2.2 answer for `token`, as `caller` may see it.

        Raises:
            UpstreamUnavailable: the signing keys could not be read.
            RedisError, OSError: the session store is down (503).
        """
        kinds = ("refresh", "access") if hint == "refresh_token" else ("access", "refresh")
        for kind in kinds:
            answer = await (
                self._access(caller, token) if kind == "access" else self._refresh(caller, token)
            )
            if answer is not None:
                return answer
        return INACTIVE

    async def _access(self, caller: OAuthClient, token: str) -> dict[str, Any] | None:
        if token.count(".") != 2:
            return None
        claims = await self._verified(token, caller.audience)
        if claims is None:
            return None
        audiences = (claims.aud,) if isinstance(claims.aud, str) else claims.aud
        mine = claims.client_id == caller.client_id or (
            caller.audience is not None and caller.audience in audiences
        )
        if not mine:
            return INACTIVE
        if claims.sid is not None and await self._sessions.is_revoked(claims.sid):
            return INACTIVE
        body: dict[str, Any] = {
            "active": True,
            "token_type": "Bearer",
            "scope": claims.scope,
            "client_id": claims.client_id,
            "sub": claims.sub,
            "aud": claims.aud if isinstance(claims.aud, str) else list(claims.aud),
            "iss": claims.iss,
            "exp": claims.exp,
            "iat": claims.iat,
            "jti": claims.jti,
        }
        if claims.sid is not None:
            body.update(sid=claims.sid, amr=list(claims.amr), auth_time=claims.auth_time)
        return body

    async def _verified(self, token: str, audience: str | None) -> AccessClaims | None:
        verifiers = [self._default]
        if audience is not None:
            verifiers.append(self._verifier(audience))
        for verifier in verifiers:
            try:
                return await verifier.verify(token)
            except TokenRejected:
                continue
            except KeysUnavailable:
                raise UpstreamUnavailable("signing keys") from None
        return None

    async def _refresh(self, caller: OAuthClient, token: str) -> dict[str, Any] | None:
        info = await self._sessions.inspect(token)
        if info is None:
            return None
        # A refresh token is for the client it was issued to, nobody else.
        if info.client_id != caller.client_id or not info.active:
            return INACTIVE
        if await self._sessions.is_revoked(info.sid):
            return INACTIVE
        return {
            "active": True,
            "token_type": "refresh_token",
            "client_id": info.client_id,
            "sub": info.user_id,
            "iss": self._issuer,
            "exp": info.expires_at,
            "sid": info.sid,
        }
