"""The verified-token cache in TokenVerifier never changes an outcome.

A repeated token skips the RSA verify, but expiry, the key set and the
token's bytes are honoured exactly as on first sight (issue 6: a cache never
outlives a token's `exp`; revocation is checked per request by the caller,
see tests/api/test_tokens.py and tests/e2e/test_cross_service.py).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from shared.tokens.jwk import rfc7638_thumbprint, rsa_public_jwk
from shared.tokens.verify import TokenVerifier
from tests.shared.test_verify_attacks import (
    AUDIENCE,
    ISSUER,
    RecordingKeySource,
    forge,
    header,
    rejected,
    rs256,
    user_claims,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def kid(signing_key: rsa.RSAPrivateKey) -> str:
    return rfc7638_thumbprint(rsa_public_jwk(signing_key.public_key()))


@pytest.fixture
def keys(signing_key: rsa.RSAPrivateKey, kid: str) -> RecordingKeySource:
    return RecordingKeySource({kid: signing_key.public_key()})


def make_verifier(keys: RecordingKeySource, *, leeway: int = 0, size: int = 1024) -> TokenVerifier:
    return TokenVerifier(
        key_source=keys,
        expected_issuer=ISSUER,
        expected_audience=AUDIENCE,
        leeway_seconds=leeway,
        verified_cache_size=size,
    )


async def test_a_repeated_token_gets_the_same_immutable_claims(
    keys: RecordingKeySource, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    verifier = make_verifier(keys)
    token = forge(header(kid), user_claims(aud=["other-api", AUDIENCE]), rs256(signing_key))
    first = await verifier.verify(token)
    again = await verifier.verify(token)
    assert again is first
    # Shared between requests, so nothing in it can be changed by one of them.
    assert first.aud == ("other-api", AUDIENCE)
    with pytest.raises(ValidationError):
        first.sub = "someone-else"  # type: ignore[misc]
    # The key is still looked up on every call: a hit is tied to the key set.
    assert keys.lookups == [kid, kid]


async def test_a_cached_token_still_expires(
    keys: RecordingKeySource, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    verifier = make_verifier(keys, leeway=0)
    exp = int(time.time()) + 1
    token = forge(header(kid), user_claims(exp=exp), rs256(signing_key))
    await verifier.verify(token)
    await verifier.verify(token)  # cached now
    await asyncio.sleep(max(0.0, exp - time.time()) + 0.05)
    assert (await rejected(verifier, token)).reason == "expired"
    # ...and stays refused: the entry was dropped, not refreshed.
    assert (await rejected(verifier, token)).reason == "expired"
    assert token not in verifier._verified


async def test_a_cached_token_dies_with_its_key(
    keys: RecordingKeySource, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    """A key withdrawn from the JWKS (say, after a compromise) ends its tokens at once."""
    verifier = make_verifier(keys)
    token = forge(header(kid), user_claims(), rs256(signing_key))
    await verifier.verify(token)
    del keys.keys[kid]
    assert (await rejected(verifier, token)).reason == "unknown_kid"


async def test_a_cached_token_is_rechecked_when_its_kid_names_another_key(
    keys: RecordingKeySource, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    verifier = make_verifier(keys)
    token = forge(header(kid), user_claims(), rs256(signing_key))
    await verifier.verify(token)
    keys.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    assert (await rejected(verifier, token)).reason == "bad_signature"


async def test_the_same_key_reparsed_keeps_accepting(
    keys: RecordingKeySource, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    """A JWKS refetch hands out new key objects; the full path runs again and accepts."""
    verifier = make_verifier(keys)
    token = forge(header(kid), user_claims(), rs256(signing_key))
    first = await verifier.verify(token)
    keys.keys[kid] = rsa_public_numbers_copy(signing_key)
    again = await verifier.verify(token)
    assert again == first
    assert again is not first


def rsa_public_numbers_copy(key: rsa.RSAPrivateKey) -> rsa.RSAPublicKey:
    return key.public_key().public_numbers().public_key()


async def test_failures_are_never_cached(
    keys: RecordingKeySource, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    verifier = make_verifier(keys)
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = forge(header(kid), user_claims(), rs256(foreign))
    for _ in range(2):
        assert (await rejected(verifier, forged)).reason == "bad_signature"
    not_yet = forge(header(kid), user_claims(nbf=int(time.time()) + 3600), rs256(signing_key))
    assert (await rejected(verifier, not_yet)).reason == "not_yet_valid"
    assert verifier._verified == {}


async def test_the_cache_is_bounded(
    keys: RecordingKeySource, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    verifier = make_verifier(keys, size=3)
    tokens = [forge(header(kid), user_claims(), rs256(signing_key)) for _ in range(5)]
    for token in tokens:
        await verifier.verify(token)
    assert list(verifier._verified) == tokens[2:]  # oldest out first
    for token in tokens:  # evicted tokens still verify: a miss only costs time
        await verifier.verify(token)


async def test_a_zero_sized_cache_verifies_every_time(
    keys: RecordingKeySource, signing_key: rsa.RSAPrivateKey, kid: str
) -> None:
    verifier = make_verifier(keys, size=0)
    token = forge(header(kid), user_claims(), rs256(signing_key))
    first = await verifier.verify(token)
    assert await verifier.verify(token) == first
    assert verifier._verified == {}


async def test_a_negative_cache_size_is_refused(keys: RecordingKeySource) -> None:
    with pytest.raises(ValueError, match="verified_cache_size"):
        make_verifier(keys, size=-1)
