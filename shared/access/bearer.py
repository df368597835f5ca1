"""Bearer-token authentication at the edge of a resource server (RFC 6750)."""

from __future__ import annotations

from redis.exceptions import RedisError
from starlette.requests import Request

from shared.access.revocation import RevocationChecker
from shared.http.problems import Problem
from shared.tokens.claims import AccessClaims
from shared.tokens.verify import KeysUnavailable, TokenRejected, TokenVerifier

__all__ = ["BearerAuthenticator", "unauthorized"]

# What a client may learn about why its token failed. Expiry is worth saying
# (the client should refresh); the other reasons stay generic so the API is
# not an oracle for forging tokens. The precise reason goes to audit/metrics.
_CLIENT_DETAIL = {"expired": "The access token has expired."}


def unauthorized(reason: str | None, realm: str) -> Problem:
    """A 401 with the RFC 6750 §3 challenge.

    No `error` attribute when no token was sent at all (§3.1); otherwise
    `invalid_token`.
    """
    if reason is None:
        challenge = f'Bearer realm="{realm}"'
        detail = "A bearer access token is required."
    else:
        challenge = f'Bearer realm="{realm}", error="invalid_token"'
        detail = _CLIENT_DETAIL.get(reason, "The access token is not valid.")
    return Problem(
        401, "Unauthorized", detail, slug="invalid-token", headers={"WWW-Authenticate": challenge}
    )


class BearerAuthenticator:
    """Verifies the request's bearer token and its session's revocation state.

    The rejection reason is left in `request.state.token_rejection` for the
    audit trail and metrics.
    """

    def __init__(
        self, *, verifier: TokenVerifier, revocation: RevocationChecker, realm: str
    ) -> None:
        self._verifier = verifier
        self._revocation = revocation
        self._realm = realm

    async def __call__(self, request: Request) -> AccessClaims:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            request.state.token_rejection = "missing"  # noqa: S105 - a reason label
            raise unauthorized(None, self._realm)
        try:
            claims = await self._verifier.verify(token.strip())
        except TokenRejected as exc:
            request.state.token_rejection = exc.reason
            raise unauthorized(exc.reason, self._realm) from None
        except KeysUnavailable:
            raise Problem(
                503,
                detail="Signing keys are unavailable; try again shortly.",
                headers={"Retry-After": "5"},
            ) from None
        if claims.sid is not None:
            try:
                revoked = await self._revocation.is_revoked(claims.sid)
            except (RedisError, OSError):
                # Fail closed: without the revocation list we cannot tell a
                # logged-out session from a live one.
                raise Problem(
                    503,
                    detail="Session state is unavailable; try again shortly.",
                    headers={"Retry-After": "2"},
                ) from None
            if revoked:
                request.state.token_rejection = "revoked"  # noqa: S105 - a reason label
                raise unauthorized("revoked", self._realm)
        request.state.principal = claims
        return claims
