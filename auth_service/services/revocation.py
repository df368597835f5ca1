"""Token revocation (RFC 7009): a client ends the session behind a token it holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from auth_service.errors import RateLimited, UpstreamUnavailable
from auth_service.services.tokens import USER_CLIENT_ID
from auth_service.stores.rate_limit import Limit, RateLimiter
from auth_service.stores.sessions import SessionStore
from shared.tokens.claims import AccessClaims
from shared.tokens.verify import KeysUnavailable, TokenRejected

TokenKind = Literal["refresh_token", "access_token"]


class _Verifier(Protocol):
    async def verify(self, token: str) -> AccessClaims: ...


@dataclass(frozen=True)
class Revocation:
    """What a revocation request did.

    `revoked`: the token's session ended now. `unknown`: not a live token of
    this issuer (garbage, expired, already revoked, a service token): nothing
    to do, and RFC 7009 §2.2 answers 200 all the same. `wrong_client`: the
    token was issued to another client than the one named; nothing changed.
    """

    outcome: Literal["revoked", "unknown", "wrong_client"]
    kind: TokenKind | None = None
    sid: str | None = None
    user_id: str | None = None


class TokenRevoker:
    """Revokes refresh and access tokens by ending their session.

    Either kind of token stands for one session (`sid`): revoking it ends
    the session, so its refresh tokens stop rotating and its access tokens
    are refused by every resource server within a second (the revocation
    feed). RFC 7009 §2.1 asks that revoking a refresh token also invalidate
    the access tokens of the same grant; ending the session does both.

    Args:
        sessions: the session store.
        verifier: verifies access tokens exactly as resource servers do.
        limiter, limit: flood control per client IP (None: unlimited).
    """

    def __init__(
        self,
        *,
        sessions: SessionStore,
        verifier: _Verifier,
        limiter: RateLimiter,
        limit: Limit | None,
    ) -> None:
        self._sessions = sessions
        self._verifier = verifier
        self._limiter = limiter
        self._limit = limit

    async def revoke(
        self, token: str, *, hint: str | None, client_id: str | None, ip: str
    ) -> Revocation:
        """Revoke `token`, whichever kind it is.

        Args:
            token: the token as the client holds it.
            hint: `token_type_hint`; only the order in which kinds are tried
                (RFC 7009 §2.1). An unknown value is ignored.
            client_id: the client asking; None means `idp-web`, the
                platform's public client. RFC 7009 §5 lets a public client
                revoke its own tokens: holding the token is the proof.

        Raises:
            RateLimited: too many revocations from this IP.
            UpstreamUnavailable: the signing keys could not be read.
            RedisError, OSError: the session store is down (503).
        """
        if self._limit is not None:
            decision = await self._limiter.hit(self._limit, ip)
            if not decision.allowed:
                raise RateLimited(decision.retry_after, self._limit.scope)
        client = client_id or USER_CLIENT_ID
        order: tuple[TokenKind, TokenKind] = (
            ("access_token", "refresh_token")
            if hint == "access_token"
            else ("refresh_token", "access_token")
        )
        for kind in order:
            found = await (
                self._refresh_owner(token) if kind == "refresh_token" else self._access_owner(token)
            )
            if found is None:
                continue
            sid, user_id, owner_client = found
            if owner_client != client:
                # RFC 7009 §2.1: only the client a token was issued to may revoke it.
                return Revocation("wrong_client", kind, sid, user_id)
            ended = await self._sessions.revoke(sid)
            return Revocation("revoked" if ended else "unknown", kind, sid, user_id)
        return Revocation("unknown")

    async def _refresh_owner(self, token: str) -> tuple[str, str, str] | None:
        # Any state: a rotated token of a live session still names it, and
        # its holder could end the session through reuse detection anyway.
        return await self._sessions.owner(token)

    async def _access_owner(self, token: str) -> tuple[str, str, str] | None:
        if token.count(".") != 2:
            return None  # not a compact JWS: no need to parse it
        try:
            claims = await self._verifier.verify(token)
        except TokenRejected:
            return None
        except KeysUnavailable:
            raise UpstreamUnavailable("signing keys") from None
        if claims.sid is None:
            return None  # a service token: no session, lives two minutes
        return claims.sid, claims.sub, claims.client_id
