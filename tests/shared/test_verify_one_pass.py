# ruff: noqa: F401, F811 - the attack suite's fixtures are shared by import, then used as arguments
"""TokenVerifier's fast paths accept exactly what the paths they shortcut accept.

Target 2 (bench/README.md, P12) took two shortcuts on a first-seen token:
the compact-JWS shape is checked as bytes instead of with a regex, and the
claims of a plain payload are parsed and validated in one pass instead of
parse, check the dict, validate. Each is pinned here against the longer way
it replaced: the same tokens pass, the claims are equal, and every rejection
still comes from the step-by-step path with PyJWT's reason.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.tokens.claims import AccessClaims
from shared.tokens.verify import TokenRejected, TokenVerifier, _segments
from tests.shared.test_verify_attacks import (  # fixtures are shared by import
    AUDIENCE,
    ISSUER,
    LEEWAY,
    RecordingKeySource,
    b64,
    header,
    keys,
    kid,
    rs256,
    signing_key,
    user_claims,
    verifier,
)
from tests.shared.test_verify_pyjwt_parity import CASES, our_reason, pyjwt_reason

_PROPERTY = settings(max_examples=400, deadline=None, derandomize=True)

# --- the compact-JWS shape ----------------------------------------------------

# The check it replaced, verbatim.
_REGEX = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_shapes = st.text(alphabet="Az09-_.=+/ \n\t\x00~é€", max_size=24) | st.text(max_size=24)


@_PROPERTY
@given(token=_shapes)
def test_compact_shape_accepts_exactly_what_the_regex_did(token: str) -> None:
    if _REGEX.fullmatch(token) is None:
        with pytest.raises(TokenRejected) as info:
            _segments(token)
        assert info.value.reason == "malformed"
        return
    signing_input, header_segment, payload_segment, signature_segment = _segments(token)
    assert [header_segment, payload_segment, signature_segment] == token.encode().split(b".")
    assert signing_input == token.rpartition(".")[0].encode()


# --- claims in one pass -------------------------------------------------------

NOW = int(time.time())


def _verifier(audience: str) -> TokenVerifier:
    return TokenVerifier(
        key_source=RecordingKeySource({}),
        expected_issuer=ISSUER,
        expected_audience=audience,
        leeway_seconds=LEEWAY,
    )


_VERIFIER = _verifier(AUDIENCE)
# An empty expected audience: an empty aud then matches yet is `missing_claim`.
_VERIFIERS = st.sampled_from([_VERIFIER, _verifier("")])


def _step_by_step(verifier: TokenVerifier, payload: bytes) -> tuple[AccessClaims, int | None] | str:
    try:
        return verifier._claims_step_by_step(payload)
    except TokenRejected as exc:
        return exc.reason


def _member(key: str, value: str) -> str:
    return f"{json.dumps(key)}:{value}"


def _base_members() -> dict[str, str]:
    return {name: json.dumps(value) for name, value in user_claims().items()}


# Values the rules treat differently, as JSON text, well clear of the leeway
# boundaries (the two paths read the clock a moment apart).
_values = st.sampled_from(
    [
        "null",
        "true",
        "false",
        "0",
        "-1",
        "1.5",
        "1e400",
        str(10**30),
        '""',
        '"123"',
        str(NOW),
        str(NOW - 3600),
        str(NOW + 3600),
        str(NOW - LEEWAY + 5),
        str(NOW + LEEWAY - 5),
        f'"{NOW}"',
        f"{NOW}.0",
        json.dumps(ISSUER),
        json.dumps(AUDIENCE),
        '"other"',
        "[]",
        '[""]',
        json.dumps([AUDIENCE]),
        json.dumps(["other", AUDIENCE]),
        json.dumps([AUDIENCE, 1]),
        '["x"]',
        "{}",
        json.dumps({"a": AUDIENCE}),
        '"\\u0075ser-service"',
        '"a\\"b"',
    ]
)
_names = st.sampled_from([*user_claims(), "nbf", "x"])
# Keys spelled with escapes still name the claim; the one-pass path must not miss them.
_spelled = st.sampled_from(['"\\u006ebf"', '"ex\\u0070"', '"nb\\u0066"', '"i\\u0073s"'])


@st.composite
def _payloads(draw: st.DrawFn) -> bytes:
    members = _base_members()
    for name in draw(st.sets(st.sampled_from(sorted(members)), max_size=2)):
        del members[name]
    members.update(draw(st.dictionaries(_names, _values, max_size=3)))
    text = [_member(k, v) for k, v in members.items()]
    # Repeated keys, before or after the first (the last one wins in JSON parsers here).
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text)))
        text.insert(at, _member(draw(_names), draw(_values)))
    if draw(st.booleans()):
        text.append(f"{draw(_spelled)}:{draw(_values)}")
    return ("{" + draw(st.sampled_from([",", ", ", " ,\n"])).join(text) + "}").encode()


def _assert_one_pass_agrees(verifier: TokenVerifier, payload: bytes) -> None:
    one_pass = verifier._claims_in_one_pass(payload)
    step_by_step = _step_by_step(verifier, payload)
    if one_pass is not None:
        assert step_by_step == (one_pass, None)
    elif isinstance(step_by_step, tuple) and step_by_step[1] is None:
        # Declined a token the longer path accepts: only ever for a payload
        # that might hold nbf (see _claims_in_one_pass), never for a rule.
        assert b'"nbf"' in payload or b"\\" in payload


@_PROPERTY
@given(verifier=_VERIFIERS, payload=_payloads())
def test_one_pass_accepts_only_what_step_by_step_accepts(
    verifier: TokenVerifier, payload: bytes
) -> None:
    _assert_one_pass_agrees(verifier, payload)


# One broken rule each (and the PyJWT parity suite's odd claims), so that no
# rule of the one-pass path rests on the random draw above.
ONE_RULE_EACH: list[dict[str, Any]] = [
    {},
    {"iat": NOW + 3600},
    {"exp": NOW - 3600},
    {"exp": NOW - LEEWAY - 5},
    {"iss": "https://evil.example"},
    {"aud": "other"},
    {"aud": ["other"]},
    {"aud": ""},
    {"aud": []},
    {"sub": ""},
    {"jti": ""},
    {"client_id": None},
    {"nbf": NOW + 3600},
    {"nbf": NOW - 3600},
    {"nbf": None},
    *CASES,
]


@pytest.mark.parametrize("audience", [AUDIENCE, ""], ids=["audience", "empty-audience"])
@pytest.mark.parametrize("overrides", ONE_RULE_EACH, ids=lambda c: ",".join(c) or "valid")
def test_one_pass_agrees_on_each_rule(audience: str, overrides: dict[str, Any]) -> None:
    claims = {**user_claims(), **overrides}
    if "nbf" not in overrides:
        claims = {k: v for k, v in claims.items() if v is not None}
    for aud in (claims.get("aud"), ""):  # the second: an empty aud for either audience
        payload = json.dumps({**claims, "aud": aud}).encode()
        _assert_one_pass_agrees(_verifier(audience), payload)


def test_the_issuers_tokens_take_the_one_pass_path() -> None:
    # Without this the shortcut could silently stop applying (P12's ~1.3 µs).
    payload = json.dumps(user_claims(), separators=(",", ":")).encode()
    claims = _VERIFIER._claims_in_one_pass(payload)
    assert claims is not None
    assert claims == AccessClaims.model_validate(json.loads(payload))


# Payloads the one-pass path declines, each through the whole verifier: the
# reason is still PyJWT's. Raw JSON, since a dict cannot spell these.
_b = {k: json.dumps(v) for k, v in user_claims().items()}
RAW_CASES = {
    "escaped nbf key in the future": {"\\u006ebf": str(NOW + 3600)},
    "escaped nbf key, null": {"nb\\u0066": "null"},
    "escaped nbf key in the past": {"\\u006ebf": str(NOW - 3600)},
    "nbf null": {"nbf": "null"},
    "nbf as a numeric string": {"nbf": '"123"'},
    "nbf as a float": {"nbf": "1.5"},
    "escaped exp key, expired": {"ex\\u0070": str(NOW - 3600)},
    "escaped audience value": {"aud": '"\\u0075ser-service"'},
}


def _raw_payload(extra: dict[str, str], *, first: bool = False) -> bytes:
    members = [f'"{k}":{v}' for k, v in extra.items()]
    base = [f'"{k}":{v}' for k, v in _b.items()]
    return ("{" + ",".join(members + base if first else base + members) + "}").encode()


def _signed(kid: str, key: rsa.RSAPrivateKey, payload: bytes) -> str:
    signing_input = f"{b64(json.dumps(header(kid)).encode())}.{b64(payload)}"
    return f"{signing_input}.{b64(rs256(key)(signing_input.encode()))}"


@pytest.mark.anyio
@pytest.mark.parametrize("extra", RAW_CASES.values(), ids=RAW_CASES.keys())
async def test_declined_payloads_keep_pyjwts_reason(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str, extra: dict[str, str]
) -> None:
    token = _signed(kid, signing_key, _raw_payload(extra))
    assert await our_reason(verifier, token) == pyjwt_reason(token, signing_key.public_key())


@pytest.mark.anyio
@pytest.mark.parametrize(("claim", "odd"), [("exp", '"soon"'), ("iss", "null"), ("aud", "[]")])
@pytest.mark.parametrize("odd_last", [False, True], ids=["odd-first", "odd-last"])
async def test_a_repeated_claim_is_read_as_its_last_value(
    verifier: TokenVerifier,
    signing_key: rsa.RSAPrivateKey,
    kid: str,
    claim: str,
    odd: str,
    odd_last: bool,
) -> None:
    payload = _raw_payload({claim: odd}, first=not odd_last)
    token = _signed(kid, signing_key, payload)
    reason = await our_reason(verifier, token)
    assert reason == pyjwt_reason(token, signing_key.public_key())
    # Odd first: the valid value after it wins and the token passes.
    assert (reason is None) == (not odd_last)
