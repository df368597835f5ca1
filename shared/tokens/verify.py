"""Verification of RS256 JWT access tokens (RFC 9068) against keys from a trusted source."""

from __future__ import annotations

import binascii
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.hashes import SHA256
from pydantic import ValidationError
from pydantic_core import from_json

from shared.tokens.claims import AccessClaims

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
# JWS extensions a `crit` header may name and still be parsed (RFC 7515
# §4.1.11); the same set PyJWT accepts, so crit ["b64"] is refused below as a
# forbidden header while any other crit value is malformed.
_SUPPORTED_CRIT = frozenset({"b64"})
# RS256 is RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3). Stateless, so built once.
_PKCS1V15 = PKCS1v15()
_SHA256 = SHA256()
_B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_VALUE = {c: i for i, c in enumerate(_B64URL_ALPHABET)}  # by byte value
# bytes.translate is a C table lookup; str.translate goes through a dict per character.
_URLSAFE_TO_STD = bytes.maketrans(b"-_", b"+/")
# An int, so `in` is one memchr; a one-byte bytes needle goes the slow way.
_BACKSLASH = ord("\\")
# Parsed-and-checked headers, by header segment -> kid. Every token signed by
# one key has the same header, so this skips a decode, a JSON parse and the
# header rules on the hot path. Safe to keep: the entry is a pure function of
# the header bytes (nothing about time, keys or sessions; the key is still
# looked up per call). Bounded, and only filled once the kid named a trusted
# key, so forged headers cannot grow it.
_HEADER_CACHE_SIZE = 64
# Tokens already verified, by the whole token string. A client sends the same
# access token with every request for its lifetime, so a repeat costs a dict
# lookup instead of an RSA verify and two JSON parses. A hit never changes an
# outcome: the token string (signature included) is identical, the key must be
# the very object that verified it (a kid dropped or replaced in the key set
# misses), and every time rule (iat, nbf, exp) is re-applied at each hit; any
# doubt evicts and runs the full path. Revocation is not a verification rule:
# callers check it on every request (shared/access/bearer.py), cached or not.
# Only successes are stored, so forged tokens cannot fill it; bounded (FIFO).
_VERIFIED_CACHE_SIZE = 1024


class _Malformed(ValueError):
    """A structural defect found while parsing; always reported as `malformed`."""


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


def _segments(token: str) -> tuple[bytes, bytes, bytes, bytes]:
    """A compact JWS (RFC 7515 §7.1) as its signing input, header, payload and signature.

    Three unpadded base64url segments; the signature may be empty so that a
    stripped signature is reported as `bad_signature`. Checked before
    anything else, as bytes: what follows needs ASCII bytes anyway, and the
    signing input comes out as a slice instead of being rebuilt.

    Raises:
        TokenRejected: `malformed`, for anything else.
    """
    # isascii() is O(1) on str, so encode() below cannot fail.
    if token.isascii():
        raw = token.encode("ascii")
        # Deleting the alphabet must leave exactly the two separators: one C
        # table pass, ~0.6 µs where the regex it replaced (tests/shared/
        # test_verify_one_pass.py) took ~1.4. No "=": segments are unpadded.
        if raw.translate(None, _B64URL_ALPHABET) == b"..":
            signing_input, _, signature = raw.rpartition(b".")
            header, _, payload = signing_input.partition(b".")
            if header and payload:
                return signing_input, header, payload, signature
    raise TokenRejected("malformed", "expected a compact JWS of three base64url segments")


def _b64decode(segment: bytes, name: str) -> bytes:
    """Strict unpadded base64url (RFC 7515 §2) of a segment _segments already vetted.

    Canonical only: a last character with non-zero unused bits decodes to the
    same bytes as its canonical twin, so accepting it would let one signed
    token exist as several strings (PyJWT refuses these too; kept).

    Raises:
        _Malformed: a length of 4n+1, or a non-canonical encoding.
    """
    tail = len(segment) % 4
    if tail == 1:
        raise _Malformed(f"expected base64url in the {name} segment")
    # The last character of a 2- or 3-character group carries 4 or 2 unused
    # bits (RFC 4648 §3.5); checking them is cheaper than re-encoding.
    if tail and _B64URL_VALUE.get(segment[-1], 0) & (0x0F if tail == 2 else 0x03):
        raise _Malformed(f"expected canonical base64url in the {name} segment")
    try:
        # strict_mode: anything outside the alphabet is an error, never skipped.
        padded = segment.translate(_URLSAFE_TO_STD) + b"=" * (-tail % 4)
        return binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error:
        raise _Malformed(f"expected base64url in the {name} segment") from None


def _json_object(raw: bytes, name: str) -> dict[str, Any]:
    """Parse a header or payload (RFC 7519 §7.2 steps 3-4, 10).

    pydantic-core's parser (already here for AccessClaims) takes half the time
    of json.loads. It is also stricter: invalid UTF-8, lone surrogate escapes
    (RFC 8259 §8.2) and nesting past 200 levels are errors, never accepted.
    No string cache: nothing from one token is kept for the next.

    Raises:
        _Malformed: not UTF-8 JSON, absurdly nested, or not an object.
    """
    try:
        value = from_json(raw, cache_strings=False)
    except ValueError:
        raise _Malformed(f"expected a JSON object {name}") from None
    if not isinstance(value, dict):
        raise _Malformed(f"expected a JSON object {name}")
    return value


def _check_crit(header: dict[str, Any]) -> None:
    """RFC 7515 §4.1.11: every critical extension must be understood and present."""
    crit = header["crit"]
    if not isinstance(crit, list) or not crit:
        raise _Malformed("expected crit to be a non-empty list")
    for ext in crit:
        if not isinstance(ext, str) or ext not in _SUPPORTED_CRIT or ext not in header:
            raise _Malformed(f"expected only supported critical extensions, got {_show(ext)}")


def _numeric_date(payload: dict[str, Any], claim: str) -> int:
    """A NumericDate as PyJWT reads it for the time checks: int() of the value.

    Strings and booleans pass here ("123", true) and are refused afterwards by
    AccessClaims' strict ints, so the reason is `invalid_claims` (as with PyJWT).

    Raises:
        _Malformed: the value is not convertible to an int at all.
    """
    try:
        return int(payload[claim])
    except (ValueError, TypeError, OverflowError):
        raise _Malformed(f"expected an integer {claim}, got {_show(payload[claim])}") from None


def _checked_kid(header_segment: bytes) -> str:
    """Parse a JOSE header and apply every header rule; returns its kid.

    Raises:
        TokenRejected: malformed, unsupported_alg, bad_typ or forbidden_header.
    """
    try:
        header = _json_object(_b64decode(header_segment, "header"), "header")
        # A non-string kid and a bad crit are refused while parsing, so
        # before the alg check, as PyJWT's header parser did.
        if "kid" in header and not isinstance(header["kid"], str):
            raise _Malformed(f"expected a string kid, got {_show(header['kid'])}")
        if "crit" in header:
            _check_crit(header)
    except _Malformed as exc:
        raise TokenRejected("malformed", str(exc)) from None

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
    return kid


@dataclass(frozen=True, slots=True)
class _Verified:
    """What a hit needs to re-check: the key that verified it and the token's times."""

    claims: AccessClaims
    key: RSAPublicKey
    kid: str
    nbf: int | None


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
        verified_cache_size: int = _VERIFIED_CACHE_SIZE,
    ) -> None:
        """Configure the verifier.

        Args:
            key_source: the only place keys come from (RFC 8725 §3.10).
            expected_issuer: exact `iss` (RFC 9068 §4 step 3).
            expected_audience: a value `aud` must contain (RFC 9068 §4 step 4).
            leeway_seconds: clock skew allowed on `exp`, `nbf` and `iat`.
            max_token_bytes: longer tokens are rejected before any parsing.
            verified_cache_size: how many verified tokens to remember (0: none);
                see _VERIFIED_CACHE_SIZE.

        Raises:
            ValueError: leeway or the cache size is negative, or the size cap is
                not positive.
        """
        if leeway_seconds < 0 or max_token_bytes <= 0 or verified_cache_size < 0:
            raise ValueError(
                "leeway_seconds and verified_cache_size must be >= 0 and max_token_bytes > 0"
            )
        self._keys = key_source
        self._issuer = expected_issuer
        self._audience = expected_audience
        self._leeway = leeway_seconds
        self._max_bytes = max_token_bytes
        self._header_kids: dict[bytes, str] = {}  # see _HEADER_CACHE_SIZE
        self._verified: dict[str, _Verified] = {}  # see _VERIFIED_CACHE_SIZE
        self._verified_max = verified_cache_size

    async def verify(self, token: str) -> AccessClaims:
        """Verify a compact JWS access token and return its claims.

        Args:
            token: the bearer token (RFC 6750 §2.1), without the scheme.

        Returns:
            The validated claims; a repeated token gets the same (immutable)
            instance back from the verified-token cache.

        Raises:
            TokenRejected: with `reason` naming the first rule the token broke.
            KeysUnavailable: from the key source; no key set was ever obtained.
        """
        # Size first: everything after this costs CPU an attacker controls.
        if len(token) > self._max_bytes:
            raise TokenRejected(
                "malformed", f"expected at most {self._max_bytes} bytes, got {len(token)}"
            )
        hit = self._verified.get(token)
        if hit is not None:
            if await self._still_valid(hit):
                return hit.claims
            # Expired, not yet valid after a clock step, or its key is gone:
            # forget it and let the full path name the reason.
            self._verified.pop(token, None)
        claims, key, kid, nbf = await self._verify_uncached(token)
        if self._verified_max:
            if len(self._verified) >= self._verified_max:
                # FIFO: the oldest entry is the nearest to its exp anyway.
                self._verified.pop(next(iter(self._verified)), None)
            self._verified[token] = _Verified(claims, key, kid, nbf)
        return claims

    async def _still_valid(self, hit: _Verified) -> bool:
        """Would the full path accept this token again now? (Same string, so same checks.)"""
        if await self._keys.get_key(hit.kid) is not hit.key:
            return False
        now = time.time()
        leeway = self._leeway
        claims = hit.claims
        return (
            claims.iat <= now + leeway
            and (hit.nbf is None or hit.nbf <= now + leeway)
            and claims.exp > now - leeway
        )

    async def _verify_uncached(
        self, token: str
    ) -> tuple[AccessClaims, RSAPublicKey, str, int | None]:
        """The full verification; returns the claims, the key, its kid and `nbf`."""
        signing_input, header_segment, payload_segment, signature_segment = _segments(token)
        # The JWS is parsed and checked here rather than by PyJWT's jwt.decode,
        # which cost 4-9x the RSA verify itself (bench/README.md, target 2):
        # each segment is decoded once, the JSON parsed once (twice for a
        # payload _claims_in_one_pass declines), and the claims checked in
        # PyJWT's order with its rules, so every rejection reason is
        # what it was (tests/shared/test_verify_attacks.py pins them).
        kid = self._header_kids.get(header_segment)
        cached = kid is not None
        if kid is None:
            kid = _checked_kid(header_segment)
        key = await self._keys.get_key(kid)
        if key is None:
            raise TokenRejected(
                "unknown_kid", f"expected a kid of the trusted key set, got {_show(kid)}"
            )
        if not cached:
            if len(self._header_kids) >= _HEADER_CACHE_SIZE:
                self._header_kids.clear()  # crude but bounded; a miss only costs a parse
            self._header_kids[header_segment] = kid

        try:
            payload_bytes = _b64decode(payload_segment, "payload")
            signature = _b64decode(signature_segment, "signature")
        except _Malformed as exc:
            raise TokenRejected("malformed", str(exc)) from None
        try:
            # The signing input is the ASCII of the first two segments (RFC 7515 §5.2).
            key.verify(signature, signing_input, _PKCS1V15, _SHA256)
        except InvalidSignature:
            # Also a stripped signature, or a token re-signed by a foreign key under a known kid.
            raise TokenRejected(
                "bad_signature", f"expected a valid RS256 signature by kid {_show(kid)}"
            ) from None
        claims = self._claims_in_one_pass(payload_bytes)
        if claims is not None:
            return claims, key, kid, None  # the one-pass path takes no token with an nbf
        claims, nbf = self._claims_step_by_step(payload_bytes)
        return claims, key, kid, nbf

    def _claims_in_one_pass(self, payload_bytes: bytes) -> AccessClaims | None:
        """The claims if the payload passes every claim rule, else None.

        One parse and validation in pydantic-core, where the step-by-step path
        parses to a dict, checks it and validates it again: ~1 µs less per
        first-seen token (bench/README.md, P12). It only ever accepts, and
        only what the step-by-step path accepts, with equal claims; on None
        that path runs and names the first broken rule, so reasons and
        messages have one source (tests/shared/test_verify_one_pass.py):

        - AccessClaims types every required claim (present, not null,
          non-empty strings, strict integer dates), which implies the
          presence and type rules there; it is the same JSON parser as
          from_json, so the same documents parse (a repeated key: the last
          wins in both).
        - `nbf` is no field of AccessClaims and PyJWT's reading of it is
          loose (int() of "123" passes, null is malformed), so a payload
          that might carry it is left to the step-by-step path: with no
          backslash, no JSON string is escaped, so an `nbf` key would show
          as the bytes `"nbf"`. Our issuer never sets nbf.
        - The time rules use one clock reading; iat is checked once (the
          step-by-step path's second iat check, with a later clock, cannot
          fail after the first passed).
        """
        if b'"nbf"' in payload_bytes or _BACKSLASH in payload_bytes:
            return None
        try:
            claims = AccessClaims.model_validate_json(payload_bytes)
        except ValidationError:
            return None
        now = time.time()
        leeway = self._leeway
        aud = claims.aud
        # An empty aud is `missing_claim` there even when it would match.
        audiences = (aud,) if isinstance(aud, str) else aud
        if (
            claims.iat <= now + leeway
            and claims.exp > now - leeway
            and claims.iss == self._issuer
            and aud
            and self._audience in audiences
        ):
            return claims
        return None

    def _claims_step_by_step(self, payload_bytes: bytes) -> tuple[AccessClaims, int | None]:
        """Parse, check the registered claims in PyJWT's order, then type them.

        Returns:
            The claims and `nbf` (None when absent).

        Raises:
            TokenRejected: the first rule the payload broke.
        """
        try:
            payload = _json_object(payload_bytes, "payload")
        except _Malformed as exc:
            raise TokenRejected("malformed", str(exc)) from None
        self._check_registered_claims(payload)

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
        # nbf passed _check_registered_claims, so it converts to an int here.
        nbf = int(payload["nbf"]) if "nbf" in payload else None
        return claims, nbf

    def _check_registered_claims(self, payload: dict[str, Any]) -> None:
        """RFC 7519 §4.1 and RFC 9068 §4 steps 3-5, in the order PyJWT checked them.

        Presence, then iat, nbf, exp, iss, aud, sub, jti: the first rule a
        token breaks names the reason, so the reasons did not change when the
        checks moved here from jwt.decode.

        Raises:
            TokenRejected: the first broken rule.
        """
        for claim in _REQUIRED_CLAIMS:
            # Presence only (null counts as absent); values are typed by AccessClaims.
            if payload.get(claim) is None:
                raise TokenRejected("missing_claim", f"expected claim {claim!r}, absent")
        now = time.time()
        leeway = self._leeway
        try:
            iat = int(payload["iat"])
        except (ValueError, TypeError, OverflowError):
            raise TokenRejected(
                "invalid_claims", f"expected an integer iat, got {_show(payload['iat'])}"
            ) from None
        try:
            # Each NumericDate is converted just before its own check: a future
            # iat outranks a garbled nbf, as it did in PyJWT.
            immature = iat > now + leeway or (
                "nbf" in payload and _numeric_date(payload, "nbf") > now + leeway
            )
            if immature:
                raise TokenRejected(
                    "not_yet_valid",
                    f"expected nbf/iat before now + {leeway}s, got nbf "
                    f"{_show(payload.get('nbf'))}, iat {_show(payload['iat'])}",
                )
            exp = _numeric_date(payload, "exp")
        except _Malformed as exc:
            raise TokenRejected("malformed", str(exc)) from None
        if exp <= now - leeway:
            raise TokenRejected(
                "expired", f"expected exp after now - {leeway}s, got exp {_show(payload['exp'])}"
            )
        iss = payload["iss"]
        if not isinstance(iss, str) or iss != self._issuer:
            raise TokenRejected(
                "bad_issuer", f"expected iss {_show(self._issuer)}, got {_show(iss)}"
            )
        aud = payload["aud"]
        if not aud:
            # "" or []: present but names no audience (PyJWT's reading, kept).
            raise TokenRejected("missing_claim", "expected claim 'aud', absent")
        audiences = [aud] if isinstance(aud, str) else aud
        if (
            not isinstance(audiences, list)
            or not all(isinstance(a, str) for a in audiences)
            or self._audience not in audiences
        ):
            raise TokenRejected(
                "bad_audience", f"expected aud {_show(self._audience)}, got {_show(aud)}"
            )
        for claim in ("sub", "jti"):
            if not isinstance(payload[claim], str):
                raise TokenRejected(
                    "invalid_claims", f"expected a string {claim}, got {_show(payload[claim])}"
                )
