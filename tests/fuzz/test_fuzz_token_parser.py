"""Property-based fuzzing of the access-token parser (shared/tokens/verify.py).

The one property: whatever string arrives in an Authorization header,
`TokenVerifier.verify` either returns claims that satisfy every rule, or
raises `TokenRejected`. Any other exception (TypeError, OverflowError,
RecursionError, UnicodeError, ...) would surface as a 500 at both services,
and a 500 on attacker-chosen input is a bug.

Three layers of input, from blind to very close to a real token:
- arbitrary text;
- JWT-shaped strings: three base64url segments of arbitrary JSON, with the
  header fields the verifier branches on drawn from interesting values;
- tokens *validly signed by the trusted key* whose claims are arbitrary JSON,
  i.e. the issuer (or a bug in it) handing us odd types: huge numbers,
  floats, infinities, nested objects where strings belong.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.tokens.claims import AccessClaims
from shared.tokens.jwk import rfc7638_thumbprint, rsa_public_jwk
from shared.tokens.verify import TokenRejected, TokenVerifier

pytestmark = pytest.mark.fuzz

ISSUER = "http://localhost:8000"
AUDIENCE = "user-service"
LEEWAY = 10
MAX_NUMERIC_DATE = 253402300799  # 9999-12-31T23:59:59Z

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_KID = rfc7638_thumbprint(rsa_public_jwk(_KEY.public_key()))

_FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class _Keys:
    async def get_key(self, kid: str) -> RSAPublicKey | None:
        return _KEY.public_key() if kid == _KID else None


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    # One loop for the module: asyncio.run per example would dominate the run.
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def _verifier() -> TokenVerifier:
    return TokenVerifier(
        key_source=_Keys(),
        expected_issuer=ISSUER,
        expected_audience=AUDIENCE,
        leeway_seconds=LEEWAY,
    )


_VERIFIER = _verifier()


def _check(loop: asyncio.AbstractEventLoop, token: str) -> AccessClaims | None:
    """Verify; None when rejected. Any other exception fails the test."""
    try:
        claims = loop.run_until_complete(_VERIFIER.verify(token))
    except TokenRejected as exc:
        rejection = exc
    else:
        _assert_acceptable(claims)
        return claims
    assert rejection.reason  # a stable label for metrics
    # The message may describe the token, never repeat it (it is a credential).
    assert len(token) < 16 or token not in str(rejection)
    return None


def _assert_acceptable(claims: AccessClaims) -> None:
    """What an accepted token must satisfy, restated independently of the verifier."""
    now = time.time()
    assert claims.iss == ISSUER
    aud = [claims.aud] if isinstance(claims.aud, str) else claims.aud
    assert AUDIENCE in aud
    assert claims.exp > now - LEEWAY - 5
    assert claims.iat <= now + LEEWAY + 5
    assert claims.sub
    assert claims.jti
    assert claims.client_id
    assert 0 <= claims.exp <= MAX_NUMERIC_DATE


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign(header: dict[str, Any], claims: Any) -> str:
    signing_input = (
        f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims, allow_nan=True).encode())}"
    )
    sig = _KEY.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(sig)}"


# JSON values, including the odd ones Python's json module reads back:
# NaN/Infinity, integers of hundreds of digits, deep nesting.
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@_FUZZ
@given(token=st.text(max_size=300))
def test_arbitrary_text_is_only_ever_rejected(loop: asyncio.AbstractEventLoop, token: str) -> None:
    assert _check(loop, token) is None


_b64_alphabet = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/.", max_size=200
)


@_FUZZ
@given(segments=st.lists(_b64_alphabet, min_size=1, max_size=5))
def test_base64ish_segments_are_only_ever_rejected(
    loop: asyncio.AbstractEventLoop, segments: list[str]
) -> None:
    assert _check(loop, ".".join(segments)) is None


_header_values = {
    "alg": st.sampled_from(["RS256", "rs256", "none", "HS256", "ES256", "PS256", ""]) | _json,
    "typ": st.sampled_from(["at+jwt", "AT+JWT", "application/at+jwt", "JWT", ""]) | _json,
    "kid": st.just(_KID) | st.text(max_size=20) | _json,
}


@st.composite
def _headers(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        return draw(_json)  # not even an object
    header = {
        name: draw(strategy) for name, strategy in _header_values.items() if draw(st.booleans())
    }
    extras = st.sampled_from(["jku", "x5u", "jwk", "crit", "b64", "cty", "zip"])
    header.update(draw(st.dictionaries(extras, _json, max_size=2)))
    return header


@_FUZZ
@given(header=_headers(), payload=_json, signature=st.binary(max_size=300))
def test_jwt_shaped_forgeries_are_only_ever_rejected(
    loop: asyncio.AbstractEventLoop, header: Any, payload: Any, signature: bytes
) -> None:
    token = ".".join(
        [
            _b64(json.dumps(header, allow_nan=True).encode()),
            _b64(json.dumps(payload, allow_nan=True).encode()),
            _b64(signature),
        ]
    )
    # Not signed by the trusted key: nothing may pass.
    assert _check(loop, token) is None


def _base_claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "sub": "5b3c8f2e-0000-4000-8000-000000000001",
        "aud": AUDIENCE,
        "exp": now + 300,
        "iat": now,
        "jti": "jti-1",
        "client_id": "idp-web",
        "scope": "openid profile",
        "sid": "sid-1",
        "roles": [],
        "amr": ["pwd"],
        "auth_time": now,
    }


_CLAIM_NAMES = [*_base_claims(), "nbf"]


@_FUZZ
@given(
    overrides=st.dictionaries(st.sampled_from(_CLAIM_NAMES), _json, min_size=1, max_size=4),
    dropped=st.sets(st.sampled_from(_CLAIM_NAMES), max_size=3),
)
def test_validly_signed_tokens_with_odd_claims_never_crash(
    loop: asyncio.AbstractEventLoop, overrides: dict[str, Any], dropped: set[str]
) -> None:
    claims = {**_base_claims(), **overrides}
    for name in dropped:
        claims.pop(name, None)
    token = _sign({"alg": "RS256", "typ": "at+jwt", "kid": _KID}, claims)
    accepted = _check(loop, token)
    if accepted is not None:
        # Whatever got through is exactly what was signed, and well-typed.
        assert accepted.exp == claims["exp"]
        assert type(accepted.exp) is int


@_FUZZ
@given(payload=_json)
def test_validly_signed_non_object_payloads_are_rejected(
    loop: asyncio.AbstractEventLoop, payload: Any
) -> None:
    token = _sign({"alg": "RS256", "typ": "at+jwt", "kid": _KID}, payload)
    assert _check(loop, token) is None


@_FUZZ
@given(data=st.data())
def test_mutated_valid_tokens_are_rejected(
    loop: asyncio.AbstractEventLoop, data: st.DataObject
) -> None:
    token = _sign({"alg": "RS256", "typ": "at+jwt", "kid": _KID}, _base_claims())
    assert _check(loop, token) is not None  # the unmutated token is fine
    pos = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    replacement = data.draw(st.characters(codec="ascii"))
    mutated = token[:pos] + replacement + token[pos + 1 :]
    result = _check(loop, mutated)
    if result is not None:
        # Only a mutation that changes nothing the signature covers may pass:
        # base64url's last character can carry unused low bits.
        assert mutated.rsplit(".", 1)[0] == token.rsplit(".", 1)[0]


def test_deeply_nested_json_is_rejected_not_a_recursion_error(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # json.loads raises RecursionError (not ValueError) past ~1000 levels.
    deep_header = _b64(b"[" * 5000)
    assert _check(loop, f"{deep_header}.e30.c2ln") is None
    deep_claims = _sign(
        {"alg": "RS256", "typ": "at+jwt", "kid": _KID},
        {**_base_claims(), "x": json.loads("[" * 900 + "]" * 900)},
    )
    assert len(deep_claims) < 8192
    _check(loop, deep_claims)  # accepted or rejected; never a crash


@pytest.mark.parametrize("claim", ["exp", "iat", "auth_time"])
@pytest.mark.parametrize(
    "value", [10**400, 2**63, MAX_NUMERIC_DATE + 1, -1], ids=["1e400", "2^63", "year10000", "neg"]
)
def test_numeric_dates_outside_any_calendar_are_refused(
    loop: asyncio.AbstractEventLoop, claim: str, value: int
) -> None:
    # Found by this module: a signed exp of 10**400 verified, a token that
    # never expires and that datetime.fromtimestamp() downstream (audit,
    # revocation TTLs) cannot even represent. Only the issuer can sign one,
    # so this is hardening against an issuer bug, refused as invalid_claims.
    claims = {**_base_claims(), claim: value}
    token = _sign({"alg": "RS256", "typ": "at+jwt", "kid": _KID}, claims)
    with pytest.raises(TokenRejected):
        loop.run_until_complete(_VERIFIER.verify(token))
