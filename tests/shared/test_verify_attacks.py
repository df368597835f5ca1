"""TokenVerifier against the known JWT attacks: one named test per attack.

Every rejection asserts the precise `reason`, so a check that starts failing
for the wrong reason (e.g. "bad_signature" where the alg pin should have
fired first) is caught too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from shared.tokens.claims import AccessClaims
from shared.tokens.jwk import rfc7638_thumbprint, rsa_public_jwk
from shared.tokens.verify import KeysUnavailable, TokenRejected, TokenVerifier

pytestmark = pytest.mark.anyio

ISSUER = "http://localhost:8000"
AUDIENCE = "user-service"
LEEWAY = 10


@pytest.fixture(scope="session")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def foreign_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def kid(signing_key: rsa.RSAPrivateKey) -> str:
    return rfc7638_thumbprint(rsa_public_jwk(signing_key.public_key()))


class RecordingKeySource:
    """The trusted key set; records lookups so tests can prove none happened."""

    def __init__(self, keys: dict[str, RSAPublicKey]) -> None:
        self.keys = keys
        self.lookups: list[str] = []

    async def get_key(self, kid: str) -> RSAPublicKey | None:
        self.lookups.append(kid)
        return self.keys.get(kid)


class NoKeysYet:
    async def get_key(self, kid: str) -> RSAPublicKey | None:
        raise KeysUnavailable("never fetched")


@pytest.fixture
def keys(signing_key: rsa.RSAPrivateKey, kid: str) -> RecordingKeySource:
    return RecordingKeySource({kid: signing_key.public_key()})


@pytest.fixture
def verifier(keys: RecordingKeySource) -> TokenVerifier:
    return TokenVerifier(
        key_source=keys, expected_issuer=ISSUER, expected_audience=AUDIENCE, leeway_seconds=LEEWAY
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS with exactly this header and signature function (no library help)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def rs256(key: rsa.RSAPrivateKey) -> Callable[[bytes], bytes]:
    return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def user_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": str(uuid.uuid4()),
        "aud": AUDIENCE,
        "exp": now + 600,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "client_id": "idp-web",
        "scope": "openid profile",
        "sid": str(uuid.uuid4()),
        "roles": ["user"],
        "amr": ["pwd"],
        "auth_time": now,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def service_claims() -> dict[str, Any]:
    claims = user_claims(sub="auth-service", client_id="auth-service", scope="profiles:write")
    for name in ("sid", "roles", "amr", "auth_time"):
        del claims[name]
    return claims


def header(kid: str, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"alg": "RS256", "typ": "at+jwt", "kid": kid}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


async def rejected(verifier: TokenVerifier, token: str) -> TokenRejected:
    with pytest.raises(TokenRejected) as info:
        await verifier.verify(token)
    # The message explains; it never carries the token (it may end up in logs).
    assert token not in str(info.value)
    return info.value


# --- the happy path and token classification ---------------------------------


async def test_valid_user_token_is_accepted(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    claims = user_claims()
    token = jwt.encode(
        claims, signing_key, algorithm="RS256", headers={"typ": "at+jwt", "kid": kid}
    )
    result = await verifier.verify(token)
    assert isinstance(result, AccessClaims)
    assert result.sub == claims["sub"]
    assert result.sid == claims["sid"]
    assert result.roles == ("user",)
    assert result.amr == ("pwd",)
    assert result.scopes == frozenset({"openid", "profile"})
    assert not result.is_service


async def test_service_token_is_classified_as_service(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    token = forge(header(kid), service_claims(), rs256(signing_key))
    result = await verifier.verify(token)
    assert result.is_service
    assert result.scopes == frozenset({"profiles:write"})


async def test_user_token_with_sub_equal_client_id_is_not_a_service_token(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    # A session id means an end user: never a service principal.
    claims = user_claims(sub="auth-service", client_id="auth-service")
    assert not (await verifier.verify(forge(header(kid), claims, rs256(signing_key)))).is_service


async def test_token_without_sid_for_another_subject_is_not_a_service_token(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    claims = user_claims(sid=None)  # None drops the claim
    assert not (await verifier.verify(forge(header(kid), claims, rs256(signing_key)))).is_service


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
async def test_typ_is_compared_case_insensitively_with_optional_prefix(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str, typ: str
) -> None:
    await verifier.verify(forge(header(kid, typ=typ), user_claims(), rs256(signing_key)))


async def test_audience_list_containing_ours_is_accepted(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    claims = user_claims(aud=["other-api", AUDIENCE])
    result = await verifier.verify(forge(header(kid), claims, rs256(signing_key)))
    assert result.aud == ("other-api", AUDIENCE)


async def test_expiry_within_leeway_is_accepted(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    claims = user_claims(exp=int(time.time()) - LEEWAY // 2)
    await verifier.verify(forge(header(kid), claims, rs256(signing_key)))


# --- algorithm attacks --------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", ""])
async def test_alg_none_is_rejected(
    verifier: TokenVerifier, keys: RecordingKeySource, kid: str, alg: str
) -> None:
    token = forge(header(kid, alg=alg), user_claims(), lambda _: b"")
    assert (await rejected(verifier, token)).reason == "unsupported_alg"
    assert keys.lookups == []


async def test_hs256_signed_with_the_public_key_pem_is_rejected(
    verifier: TokenVerifier, keys: RecordingKeySource, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    # Key confusion (CVE-2015-9235 family): a verifier that lets the header
    # pick HMAC would use the public key's PEM as the shared secret.
    pem = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = forge(
        header(kid, alg="HS256"),
        user_claims(),
        lambda data: hmac.new(pem, data, hashlib.sha256).digest(),
    )
    assert (await rejected(verifier, token)).reason == "unsupported_alg"
    assert keys.lookups == []


async def test_hmac_signature_under_an_rs256_header_is_a_bad_signature(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    pem = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = forge(
        header(kid), user_claims(), lambda data: hmac.new(pem, data, hashlib.sha256).digest()
    )
    assert (await rejected(verifier, token)).reason == "bad_signature"


@pytest.mark.parametrize("alg", ["RS512", "PS256", "ES256", "rs256", "RS256 "])
async def test_other_algorithms_are_rejected(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str, alg: str
) -> None:
    token = forge(header(kid, alg=alg), user_claims(), rs256(signing_key))
    assert (await rejected(verifier, token)).reason == "unsupported_alg"


async def test_missing_alg_is_rejected(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    token = forge(header(kid, alg=None), user_claims(), rs256(signing_key))
    assert (await rejected(verifier, token)).reason == "unsupported_alg"


# --- signature attacks --------------------------------------------------------


async def test_tampered_claims_are_rejected(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    token = forge(header(kid), user_claims(roles=["user"]), rs256(signing_key))
    head, _, signature = token.split(".")
    escalated = b64(json.dumps(user_claims(roles=["admin"])).encode())
    assert (await rejected(verifier, f"{head}.{escalated}.{signature}")).reason == "bad_signature"


async def test_stripped_signature_is_rejected(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    token = forge(header(kid), user_claims(), rs256(signing_key))
    stripped = token.rsplit(".", 1)[0] + "."
    assert (await rejected(verifier, stripped)).reason == "bad_signature"


async def test_signature_segment_removed_entirely_is_malformed(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    token = forge(header(kid), user_claims(), rs256(signing_key))
    assert (await rejected(verifier, token.rsplit(".", 1)[0])).reason == "malformed"


async def test_foreign_key_reusing_a_known_kid_is_rejected(
    verifier: TokenVerifier, foreign_key: rsa.RSAPrivateKey, kid: str
) -> None:
    token = forge(header(kid), user_claims(), rs256(foreign_key))
    assert (await rejected(verifier, token)).reason == "bad_signature"


async def test_unknown_kid_is_rejected(
    verifier: TokenVerifier, foreign_key: rsa.RSAPrivateKey
) -> None:
    other_kid = rfc7638_thumbprint(rsa_public_jwk(foreign_key.public_key()))
    token = forge(header(other_kid), user_claims(), rs256(foreign_key))
    assert (await rejected(verifier, token)).reason == "unknown_kid"


@pytest.mark.parametrize("bad_kid", [None, "", 7, ["a"], {"k": "v"}])
async def test_missing_or_non_string_kid_is_malformed(
    verifier: TokenVerifier, keys: RecordingKeySource, signing_key: rsa.RSAPrivateKey, bad_kid: Any
) -> None:
    hdr = {"alg": "RS256", "typ": "at+jwt"}
    if bad_kid is not None:
        hdr["kid"] = bad_kid
    token = forge(hdr, user_claims(), rs256(signing_key))
    assert (await rejected(verifier, token)).reason == "malformed"
    assert keys.lookups == []


# --- header-supplied keys: keys come only from the key source ------------------


async def test_jku_header_is_rejected(
    verifier: TokenVerifier, keys: RecordingKeySource, foreign_key: rsa.RSAPrivateKey, kid: str
) -> None:
    token = forge(
        header(kid, jku="https://attacker.example/jwks.json"), user_claims(), rs256(foreign_key)
    )
    assert (await rejected(verifier, token)).reason == "forbidden_header"
    assert keys.lookups == []


async def test_embedded_jwk_header_is_rejected(
    verifier: TokenVerifier, keys: RecordingKeySource, foreign_key: rsa.RSAPrivateKey, kid: str
) -> None:
    # CVE-2018-0114 style: the token carries the key it was signed with.
    embedded = {**rsa_public_jwk(foreign_key.public_key()), "kid": kid}
    token = forge(header(kid, jwk=embedded), user_claims(), rs256(foreign_key))
    assert (await rejected(verifier, token)).reason == "forbidden_header"
    assert keys.lookups == []


async def test_x5u_header_is_rejected(
    verifier: TokenVerifier, keys: RecordingKeySource, foreign_key: rsa.RSAPrivateKey, kid: str
) -> None:
    token = forge(
        header(kid, x5u="https://attacker.example/cert.pem"), user_claims(), rs256(foreign_key)
    )
    assert (await rejected(verifier, token)).reason == "forbidden_header"
    assert keys.lookups == []


async def test_x5c_header_is_rejected(
    verifier: TokenVerifier, keys: RecordingKeySource, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    token = forge(header(kid, x5c=["MIIB..."]), user_claims(), rs256(signing_key))
    assert (await rejected(verifier, token)).reason == "forbidden_header"
    assert keys.lookups == []


async def test_crit_header_is_rejected_even_when_correctly_signed(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    token = forge(header(kid, crit=["b64"], b64=True), user_claims(), rs256(signing_key))
    assert (await rejected(verifier, token)).reason == "forbidden_header"


async def test_unknown_crit_extension_is_malformed(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    # PyJWT's header parser already refuses extensions it does not implement.
    token = forge(header(kid, crit=["exp"], exp=1), user_claims(), rs256(signing_key))
    assert (await rejected(verifier, token)).reason == "malformed"


# --- typ (RFC 9068 §4: an ID token or other JWT is not an access token) --------


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt ", "application/jwt", "dpop+jwt", 1, None])
async def test_wrong_typ_is_rejected(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str, typ: Any
) -> None:
    token = forge(header(kid, typ=typ), user_claims(), rs256(signing_key))
    assert (await rejected(verifier, token)).reason == "bad_typ"


async def test_missing_typ_is_rejected(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    # An OIDC ID token signed by the same issuer has typ "JWT" or none at all.
    token = forge({"alg": "RS256", "kid": kid}, user_claims(), rs256(signing_key))
    assert (await rejected(verifier, token)).reason == "bad_typ"


# --- issuer and audience --------------------------------------------------------


async def test_wrong_issuer_is_rejected(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    token = forge(header(kid), user_claims(iss="https://evil.example"), rs256(signing_key))
    exc = await rejected(verifier, token)
    assert exc.reason == "bad_issuer"
    assert ISSUER in str(exc)  # expected ...
    assert "evil.example" in str(exc)  # ... vs actual


async def test_wrong_audience_is_rejected(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    token = forge(header(kid), user_claims(aud="billing-service"), rs256(signing_key))
    exc = await rejected(verifier, token)
    assert exc.reason == "bad_audience"
    assert AUDIENCE in str(exc)
    assert "billing-service" in str(exc)


async def test_audience_list_without_ours_is_rejected(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    token = forge(header(kid), user_claims(aud=["a", "b"]), rs256(signing_key))
    assert (await rejected(verifier, token)).reason == "bad_audience"


# --- time -----------------------------------------------------------------------


async def test_expired_token_is_rejected(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    now = int(time.time())
    claims = user_claims(iat=now - 700, exp=now - LEEWAY - 5)
    assert (await rejected(verifier, forge(header(kid), claims, rs256(signing_key)))).reason == (
        "expired"
    )


async def test_not_yet_valid_token_is_rejected(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    claims = user_claims(nbf=int(time.time()) + LEEWAY + 60)
    assert (await rejected(verifier, forge(header(kid), claims, rs256(signing_key)))).reason == (
        "not_yet_valid"
    )


async def test_iat_in_the_future_is_rejected(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    now = int(time.time())
    claims = user_claims(iat=now + LEEWAY + 60, exp=now + 900)
    assert (await rejected(verifier, forge(header(kid), claims, rs256(signing_key)))).reason == (
        "not_yet_valid"
    )


# --- claims ---------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"])
async def test_missing_required_claim_is_rejected(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str, claim: str
) -> None:
    claims = user_claims()
    del claims[claim]
    exc = await rejected(verifier, forge(header(kid), claims, rs256(signing_key)))
    assert exc.reason == "missing_claim"
    assert claim in str(exc)


@pytest.mark.parametrize(
    "overrides",
    [
        # PyJWT int()s strings; the model does not. A week ahead: the value is
        # made at collection, and a long suite must not reach it first.
        {"exp": str(int(time.time()) + 7 * 24 * 3600)},
        {"roles": "admin"},  # a string is not a list of roles
        {"sub": 42},
        {"sid": ""},  # an empty session id would dodge revocation lookups
        {"client_id": ""},
        {"auth_time": True},
    ],
)
async def test_ill_typed_claims_are_rejected(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str, overrides: dict[str, Any]
) -> None:
    token = forge(header(kid), user_claims(**overrides), rs256(signing_key))
    assert (await rejected(verifier, token)).reason == "invalid_claims"


async def test_payload_that_is_not_an_object_is_malformed(
    verifier: TokenVerifier, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    signing_input = f"{b64(json.dumps(header(kid)).encode())}.{b64(b'[1,2,3]')}"
    token = f"{signing_input}.{b64(rs256(signing_key)(signing_input.encode()))}"
    assert (await rejected(verifier, token)).reason == "malformed"


# --- garbage and size -------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "abc",
        "a.b",
        "a.b.c",
        "....",
        "a.b.c.d",
        "bnVsbA.e30.AAAA",  # header is JSON null
        "WzFd.e30.AAAA",  # header is a JSON array
        "!!!.e30.AAAA",
        "eyJhbGciOiJSUzI1NiJ9==.e30.AAAA",  # padded (RFC 7515 §2 forbids padding)
        "eyJhbGciOiJSUzI1NiJ9.e30.AAAA\n",
        "ëyJ.e30.AAAA",
    ],
)
async def test_garbage_is_malformed(
    verifier: TokenVerifier, keys: RecordingKeySource, token: str
) -> None:
    assert (await rejected(verifier, token)).reason == "malformed"
    assert keys.lookups == []


async def test_empty_token_is_malformed(verifier: TokenVerifier) -> None:
    with pytest.raises(TokenRejected) as info:
        await verifier.verify("")
    assert info.value.reason == "malformed"


async def test_empty_header_object_has_no_algorithm(verifier: TokenVerifier) -> None:
    assert (await rejected(verifier, "e30.e30.AAAA")).reason == "unsupported_alg"


async def test_over_long_token_is_rejected_before_parsing(
    verifier: TokenVerifier, keys: RecordingKeySource, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    claims = user_claims(padding="x" * 9000)
    token = forge(header(kid), claims, rs256(signing_key))
    exc = await rejected(verifier, token)
    assert exc.reason == "malformed"
    assert "8192" in str(exc)
    assert keys.lookups == []


async def test_keys_unavailable_propagates_for_a_503(signing_key: rsa.RSAPrivateKey) -> None:
    verifier = TokenVerifier(
        key_source=NoKeysYet(), expected_issuer=ISSUER, expected_audience=AUDIENCE
    )
    with pytest.raises(KeysUnavailable):
        await verifier.verify(forge(header("k"), user_claims(), rs256(signing_key)))


def test_constructor_rejects_nonsense_limits(keys: RecordingKeySource) -> None:
    with pytest.raises(ValueError, match="leeway"):
        TokenVerifier(
            key_source=keys, expected_issuer=ISSUER, expected_audience=AUDIENCE, leeway_seconds=-1
        )
