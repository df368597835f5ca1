"""The challenge store against the real Redis: single use, bound to ceremony
and user, short-lived, and no secret in a key name."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from auth_service.stores.challenges import Ceremony, ChallengeStore
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    r = aioredis.Redis.from_url(REDIS_URL)
    yield r
    await r.aclose()


def _store(client: aioredis.Redis, prefix: str) -> ChallengeStore:
    return ChallengeStore(client, prefix=prefix, challenge_ttl=330, mfa_ttl=300)


async def test_a_challenge_is_taken_once(client: aioredis.Redis, redis_prefix: str) -> None:
    store = _store(client, redis_prefix)
    challenge = await store.begin(Ceremony.REGISTER, user_id="u1")
    assert len(challenge) == 32
    pending = await store.take(Ceremony.REGISTER, challenge)
    assert pending is not None
    assert (pending.challenge, pending.user_id) == (challenge, "u1")
    assert await store.take(Ceremony.REGISTER, challenge) is None


async def test_a_challenge_only_serves_its_own_ceremony(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    store = _store(client, redis_prefix)
    challenge = await store.begin(Ceremony.LOGIN, user_id=None)
    assert await store.take(Ceremony.REGISTER, challenge) is None
    taken = await store.take(Ceremony.LOGIN, challenge)
    assert taken is not None
    assert taken.user_id is None


async def test_keys_are_namespaced_hashed_and_expire(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    store = _store(client, redis_prefix)
    challenge = await store.begin(Ceremony.REGISTER, user_id="u1")
    token, _ = await store.begin_mfa(user_id="u1")
    keys = sorted([k.decode() async for k in client.scan_iter(match=f"{redis_prefix}*")])
    assert keys == sorted(
        [
            f"{redis_prefix}chal:register:{hashlib.sha256(challenge).hexdigest()}",
            f"{redis_prefix}chal:mfa:{hashlib.sha256(token.encode()).hexdigest()}",
        ]
    )
    ttls = {k: await client.ttl(k) for k in keys}
    assert all(0 < t <= 330 for t in ttls.values()), ttls
    # The mfa_token is a bearer secret: it appears in no key and no value.
    for k in keys:
        assert token not in k
        assert token.encode() not in (await client.get(k) or b"")


async def test_mfa_token_is_single_use_and_bound_to_user_and_challenge(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    store = _store(client, redis_prefix)
    token, challenge = await store.begin_mfa(user_id="u42")
    assert len(token) >= 43  # 256 bits, base64url
    assert await store.take_mfa(token + "x") is None
    pending = await store.take_mfa(token)
    assert pending is not None
    assert (pending.user_id, pending.challenge) == ("u42", challenge)
    assert await store.take_mfa(token) is None


async def test_randomness_is_injectable(client: aioredis.Redis, redis_prefix: str) -> None:
    store = ChallengeStore(
        client,
        prefix=redis_prefix,
        challenge_ttl=60,
        mfa_ttl=60,
        random_bytes=lambda n: b"\x05" * n,
    )
    assert await store.begin(Ceremony.LOGIN, user_id=None) == b"\x05" * 32
    with pytest.raises(RuntimeError):
        await store.begin(Ceremony.LOGIN, user_id=None)  # same challenge: refused, not overwritten
