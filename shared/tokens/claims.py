"""The claims of a verified access token (RFC 9068 §2.2, RFC 7519 §4.1)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StrictInt

__all__ = ["AccessClaims"]

# Identifiers must be non-empty: an empty `sub` equal to an empty `client_id`
# would otherwise classify as a service token, and PyJWT's `require` only
# checks presence, not emptiness.
_Id = Annotated[str, Field(min_length=1)]
# A NumericDate (RFC 7519 §2) a calendar can hold: 1970 to 9999-12-31. A
# signed exp of 10**400 used to verify -- a token that never expires, which
# datetime.fromtimestamp() or a Redis EXPIRE downstream cannot represent
# (found by tests/fuzz/test_fuzz_token_parser.py).
_NumericDate = Annotated[StrictInt, Field(ge=0, le=253402300799)]


class AccessClaims(BaseModel, frozen=True, extra="ignore", cache_strings=False):
    """Claims of an access token whose signature, issuer, audience and times were verified.

    NumericDate claims are strict integers: our issuer writes whole seconds, and
    accepting strings or booleans ("123", true) would let a signed-but-odd token
    mean different things to PyJWT (which calls int()) and to this model.

    No string cache when validating JSON (TokenVerifier does, shared/tokens/verify.py):
    pydantic-core's is process-wide, and nothing from one token is kept for the
    next (as with the verifier's own from_json); it costs ~0.1 µs a token.
    """

    iss: _Id
    sub: _Id
    # A tuple, not a list: TokenVerifier hands the same instance to every
    # request that repeats a token, so the claims must be deeply immutable.
    aud: str | tuple[str, ...]
    exp: _NumericDate
    iat: _NumericDate
    jti: _Id
    client_id: _Id
    scope: str = ""
    sid: _Id | None = None
    roles: tuple[str, ...] = ()
    amr: tuple[str, ...] = ()
    auth_time: _NumericDate | None = None

    @property
    def scopes(self) -> frozenset[str]:
        """The space-delimited `scope` claim as a set (RFC 9068 §2.2.3, RFC 6749 §3.3)."""
        # Only %x20 delimits scope tokens (RFC 6749 §3.3); empty tokens are dropped.
        return frozenset(token for token in self.scope.split(" ") if token)

    @property
    def is_service(self) -> bool:
        """True for a client-credentials style token the auth service minted for itself.

        RFC 9068 §2.2: without an end user, `sub` is the client's own id. A user
        token always carries a session id, so both conditions must hold; a user
        token can never pass as a service token, nor the reverse.
        """
        return self.sid is None and self.sub == self.client_id
