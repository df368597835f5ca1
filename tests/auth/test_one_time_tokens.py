"""The one-time token store against the real Redis: the data a token carries,
single use, newest only, retirement, purposes apart, nothing secret stored."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from auth_service.stores.one_time_tokens import OneTimeGrant, OneTimeTokens
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    r = aioredis.Redis.from_url(REDIS_URL)
    yield r
    await r.aclose()


def _store(client: aioredis.Redis, prefix: str, purpose: str = "verify") -> OneTimeTokens:
    return OneTimeTokens(client, prefix=prefix, purpose=purpose, ttl_seconds=600)


async def test_a_token_carries_its_data_and_is_redeemed_once(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    store = _store(client, redis_prefix)
    token = await store.issue("u1", data="ada@example.com")
    assert await store.lookup(token) == OneTimeGrant("u1", "ada@example.com")
    assert await store.lookup(token) is not None  # a lookup spends nothing
    assert await store.redeem(token) == OneTimeGrant("u1", "ada@example.com")
    assert await store.redeem(token) is None
    assert await store.lookup(token) is None
    # Nothing of it is left behind: token, data and the account's index.
    assert await client.keys(f"{redis_prefix}ott:*") == []


async def test_without_data_the_reset_shape_is_unchanged(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    store = _store(client, redis_prefix, purpose="reset")
    token = await store.issue("u1")
    assert await store.peek(token) == "u1"
    assert await store.lookup(token) == OneTimeGrant("u1", "")
    assert await store.consume(token) == "u1"
    assert await store.consume(token) is None


async def test_only_the_newest_token_works_and_its_data_with_it(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    store = _store(client, redis_prefix)
    old = await store.issue("u1", data="old@example.com")
    new = await store.issue("u1", data="new@example.com")
    assert await store.lookup(old) is None
    assert await store.redeem(old) is None
    assert await store.redeem(new) == OneTimeGrant("u1", "new@example.com")
    assert await client.keys(f"{redis_prefix}ott:*") == []


async def test_retire_voids_the_token_and_its_data(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    store = _store(client, redis_prefix)
    token = await store.issue("u1", data="ada@example.com")
    assert await store.retire("u1") is True
    assert await store.redeem(token) is None
    assert await store.retire("u1") is False
    assert await client.keys(f"{redis_prefix}ott:*") == []


async def test_purposes_are_apart(client: aioredis.Redis, redis_prefix: str) -> None:
    verify, change = _store(client, redis_prefix), _store(client, redis_prefix, "email-change")
    a = await verify.issue("u1", data="ada@example.com")
    b = await change.issue("u1", data='{"email": "new@example.com"}')
    assert await change.lookup(a) is None
    assert await verify.lookup(b) is None
    await change.retire("u1")
    assert await verify.lookup(a) == OneTimeGrant("u1", "ada@example.com")


async def test_of_concurrent_redemptions_one_wins(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    store = _store(client, redis_prefix)
    token = await store.issue("u1", data="ada@example.com")
    results = await asyncio.gather(*(store.redeem(token) for _ in range(8)))
    assert [r for r in results if r is not None] == [OneTimeGrant("u1", "ada@example.com")]


async def test_stored_as_digests_with_the_ttl(client: aioredis.Redis, redis_prefix: str) -> None:
    store = _store(client, redis_prefix)
    token = await store.issue("u1", data="ada@example.com")
    digest = hashlib.sha256(token.encode()).hexdigest()
    # One hash tag for all three (one Cluster slot), carried at the token's front.
    tag = token[:16]
    keys = sorted(k.decode() for k in await client.keys(f"{redis_prefix}ott:*"))
    assert keys == sorted(
        [
            f"{redis_prefix}ott:verify:t:{{{tag}}}:{digest}",
            f"{redis_prefix}ott:verify:d:{{{tag}}}:{digest}",
            f"{redis_prefix}ott:verify:s:{{{tag}}}:u1",
        ]
    )
    for key in keys:
        assert 590 < await client.ttl(key) <= 600
        assert token.encode() not in (await client.get(key) or b"")
        assert token not in key
