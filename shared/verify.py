"""Verification of RS256 JWT access tokens (RFC 9068) against keys from a trusted source."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Literal, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.exceptions import InvalidJTIError, InvalidSubjectError
from jwt.types import Options
from pydantic import ValidationError

from shared.claims import AccessClaims

__all__ = ["KeySource", "KeysUnavailable", "RejectionReason", "TokenRejected", "TokenVerifier"]

RejectionReason = Literal[
    "malformed",
    "unsupported_alg",
    "bad_typ",
    "forbidden_header",
    "unknown_kid",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "bad_issuer",
    "bad_audience",
    "missing_claim",
    "invalid_claims",
]

# Pinned, never read from the token (RFC 8725 §3.1): the header only has to agree.
_ALGORITHM = "RS256"
# RFC 9068 §4 (and RFC 7515 §4.1.9: "application/" may be omitted, case-insensitive).
_ACCEPTED_TYP = frozenset({"at+jwt", "application/at+jwt"})
# Header parameters that name a key or change processing. Keys come only from
# the configured key source (RFC 8725 §3.10), so a token that points at its own
# key (jku, x5u, jwk, x5c) is an attack, and one that demands extensions we do
# not implement (crit, RFC 7515 §4.1.11; b64, RFC 7797) is not ours.
_FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit", "b64"})
_REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"]
# Compact JWS (RFC 7515 §7.1): three unpadded base64url segments; the signature
# may be empty so a stripped signature is reported as such. Checked with one C
# regex before PyJWT, which also rejects non-ASCII and padding for free.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


class TokenRejected(Exception):
    """The token is not acceptable; `reason` is a stable label for metrics and audit.

    The message says what was expected and what was found, never the token.
    """

    def __init__(self, reason: RejectionReason, message: str) -> None:
        super().__init__(message)
        self.reason: RejectionReason = reason


class KeysUnavailable(Exception):
    """No key set could be obtained at all; the caller answers 503, not 401."""


class KeySource(Protocol):
    """Where verification keys come from (a JWKS client, or the issuer's own key ring)."""

    async def get_key(self, kid: str) -> RSAPublicKey | None:
        """The parsed public key for `kid`, or None when the source does not know it.

        Raises:
            KeysUnavailable: the source has never obtained any key set.
        """
        ...


def _show(value: object) -> str:
    # repr escapes control characters (no log injection); the cap bounds log size.
    return f"{value!r:.64}"


def _peek(token: str, claim: str) -> str:
    """Describe one payload claim for an error message (error path only)."""
    try:
        segment = token.split(".")[1]
        payload = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        return _show(payload.get(claim)) if isinstance(payload, dict) else "unreadable"
    except (ValueError, IndexError):
        return "unreadable"


class TokenVerifier:
    """Verifies JWT access tokens as RFC 9068 §4 and RFC 8725 require.

    Algorithm, issuer, audience and required claims are fixed at construction;
    nothing in the token chooses how it is checked.
    """

    def __init__(
        self,
        *,
        key_source: KeySource,
        expected_issuer: str,
        expected_audience: str,
        leeway_seconds: int = 10,
        max_token_bytes: int = 8192,
    ) -> None:
        """Configure the verifier.

        Args:
            key_source: the only place keys come from (RFC 8725 §3.10).
            expected_issuer: exact `iss` (RFC 9068 §4 step 3).
            expected_audience: a value `aud` must contain (RFC 9068 §4 step 4).
            leeway_seconds: clock skew allowed on `exp`, `nbf` and `iat`.
            max_token_bytes: longer tokens are rejected before any parsing.

        Raises:
            ValueError: leeway is negative or the size cap is not positive.
        """
        if leeway_seconds < 0 or max_token_bytes <= 0:
            raise ValueError("leeway_seconds must be >= 0 and max_token_bytes > 0")
        self._keys = key_source
        self._issuer = expected_issuer
        self._audience = expected_audience
        self._leeway = leeway_seconds
        self._max_bytes = max_token_bytes
        # PyJWT checks only presence for `require`; values are checked below
        # and by AccessClaims. Built once: no per-call allocation.
        self._options: Options = {"require": _REQUIRED_CLAIMS}

    async def verify(self, token: str) -> AccessClaims:
        """Verify a compact JWS access token and return its claims.

        Args:
            token: the bearer token (RFC 6750 §2.1), without the scheme.

        Returns:
            The validated claims.

        Raises:
            TokenRejected: with `reason` naming the first rule the token broke.
            KeysUnavailable: from the key source; no key set was ever obtained.
        """
        # Size first: everything after this costs CPU an attacker controls.
        if len(token) > self._max_bytes:
            raise TokenRejected(
                "malformed", f"expected at most {self._max_bytes} bytes, got {len(token)}"
            )
        if _COMPACT_JWS.fullmatch(token) is None:
            raise TokenRejected("malformed", "expected a compact JWS of three base64url segments")
        # PyJWT's own parser reads the header, so these checks see exactly what
        # jwt.decode will; only the header segment is given to it, because it
        # would otherwise decode the payload and signature twice per call.
        header_segment = token[: token.index(".")]
        try:
            header = jwt.get_unverified_header(f"{header_segment}..")
        except jwt.PyJWTError:
            raise TokenRejected("malformed", "expected a JSON object header") from None

        alg = header.get("alg")
        if alg != _ALGORITHM:
            # alg "none" and HS256-with-the-public-key (key confusion) end here.
            raise TokenRejected("unsupported_alg", f"expected alg 'RS256', got {_show(alg)}")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYP:
            # RFC 9068 §4: typ keeps ID tokens and other JWTs from passing as access tokens.
            raise TokenRejected("bad_typ", f"expected typ 'at+jwt', got {_show(typ)}")
        forbidden = _FORBIDDEN_HEADERS.intersection(header)
        if forbidden:
            raise TokenRejected(
                "forbidden_header",
                f"expected none of {sorted(_FORBIDDEN_HEADERS)}, got {sorted(forbidden)}",
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("malformed", f"expected a non-empty string kid, got {_show(kid)}")

        key = await self._keys.get_key(kid)
        if key is None:
            raise TokenRejected(
                "unknown_kid", f"expected a kid of the trusted key set, got {_show(kid)}"
            )

        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[_ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options=self._options,
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected(
                "expired",
                f"expected exp after now - {self._leeway}s, got exp {_peek(token, 'exp')}",
            ) from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected(
                "not_yet_valid",
                f"expected nbf/iat before now + {self._leeway}s, got nbf "
                f"{_peek(token, 'nbf')}, iat {_peek(token, 'iat')}",
            ) from None
        except jwt.InvalidIssuerError:
            raise TokenRejected(
                "bad_issuer", f"expected iss {_show(self._issuer)}, got {_peek(token, 'iss')}"
            ) from None
        except jwt.InvalidAudienceError:
            raise TokenRejected(
                "bad_audience", f"expected aud {_show(self._audience)}, got {_peek(token, 'aud')}"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected("missing_claim", f"expected claim {exc.claim!r}, absent") from None
        except jwt.InvalidSignatureError:
            # Also a token re-signed by a foreign key under a known kid.
            raise TokenRejected(
                "bad_signature", f"expected a valid RS256 signature by kid {_show(kid)}"
            ) from None
        except (jwt.InvalidIssuedAtError, InvalidSubjectError, InvalidJTIError) as exc:
            raise TokenRejected("invalid_claims", f"expected well-typed claims: {exc}") from None
        except jwt.PyJWTError as exc:
            # PyJWT's messages name the defect, never the token's content.
            raise TokenRejected("malformed", f"expected a well-formed JWT: {exc}") from None

        try:
            claims = AccessClaims.model_validate(payload)
        except ValidationError as exc:
            # Field names and error kinds only: input values could be long or odd.
            fields = sorted({".".join(map(str, err["loc"])) for err in exc.errors()})
            raise TokenRejected("invalid_claims", f"expected valid claims, bad: {fields}") from None
        # RFC 7519 §4.1.6 leaves iat informational; a future iat means a forged
        # or mis-clocked issuer. PyJWT >= 2.10 checks it too; kept so the rule
        # does not hang on a library version (pyproject allows 2.9).
        if claims.iat > time.time() + self._leeway:
            raise TokenRejected(
                "not_yet_valid", f"expected iat before now + {self._leeway}s, got {claims.iat}"
            )
        return claims
