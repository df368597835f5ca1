"""The rate limiter against the real Redis: several limits taken in one round
trip count exactly as one `hit` after another did."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from auth_service.stores.rate_limit import Limit, RateLimiter
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.anyio

PER_IP = Limit("t-ip", 3, 60)
PER_ACCOUNT = Limit("t-account", 5, 60)


class CountingRedis(aioredis.Redis):
    """The real client, counting the commands it sends (each is a round trip here)."""

    commands: list[str]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]))
        return await super().execute_command(*args, **options)


@pytest.fixture
async def client() -> AsyncIterator[CountingRedis]:
    r = CountingRedis.from_url(REDIS_URL)
    r.commands = []
    yield r
    await r.aclose()


async def _count(client: aioredis.Redis, prefix: str, limit: Limit, subject: str) -> int:
    raw = await client.get(f"{prefix}rl:{limit.scope}:{subject}")
    return int(raw) if raw is not None else 0


async def test_limits_are_counted_in_order_until_one_refuses(
    client: CountingRedis, redis_prefix: str
) -> None:
    limiter = RateLimiter(client, prefix=redis_prefix, enabled=True)
    pairs = [(PER_IP, "10.0.0.1"), (PER_ACCOUNT, "a@example.com")]
    for _ in range(3):
        assert await limiter.hit_each(pairs) is None
    refused = await limiter.hit_each(pairs)
    assert refused is not None
    limit, decision = refused
    assert limit == PER_IP
    assert not decision.allowed
    assert 1 <= decision.retry_after <= 60
    # The refused attempt was counted against the IP, never against the
    # account: a flood from one address cannot spend the account's budget.
    assert await _count(client, redis_prefix, PER_IP, "10.0.0.1") == 4
    assert await _count(client, redis_prefix, PER_ACCOUNT, "a@example.com") == 3
    ttl = await client.pttl(f"{redis_prefix}rl:{PER_ACCOUNT.scope}:a@example.com")
    assert 0 < ttl <= 60_000


async def test_a_later_limit_refuses_after_the_earlier_ones_counted(
    client: CountingRedis, redis_prefix: str
) -> None:
    limiter = RateLimiter(client, prefix=redis_prefix, enabled=True)
    # Six addresses against one account: each IP stays under its limit, the account does not.
    outcomes = [
        await limiter.hit_each([(PER_IP, f"10.0.0.{i}"), (PER_ACCOUNT, "b@example.com")])
        for i in range(6)
    ]
    assert outcomes[:5] == [None] * 5
    assert outcomes[5] is not None
    assert outcomes[5][0] == PER_ACCOUNT
    assert await _count(client, redis_prefix, PER_IP, "10.0.0.5") == 1


async def test_several_limits_cost_one_round_trip_and_so_does_their_reset(
    client: CountingRedis, redis_prefix: str
) -> None:
    limiter = RateLimiter(client, prefix=redis_prefix, enabled=True)
    pairs = [(PER_IP, "10.0.0.9"), (PER_ACCOUNT, "c@example.com"), (PER_ACCOUNT, "c|net")]
    await limiter.hit_each(pairs)  # loads the script on a fresh server
    client.commands.clear()
    assert await limiter.hit_each(pairs) is None
    await limiter.reset_each(pairs[1:])
    assert client.commands == ["EVALSHA", "DEL"]
    assert await _count(client, redis_prefix, PER_IP, "10.0.0.9") == 2
    assert await _count(client, redis_prefix, PER_ACCOUNT, "c@example.com") == 0


async def test_a_disabled_limiter_sends_nothing(client: CountingRedis, redis_prefix: str) -> None:
    limiter = RateLimiter(client, prefix=redis_prefix, enabled=False)
    assert await limiter.hit_each([(PER_IP, "10.0.0.1")] * 10) is None
    await limiter.reset_each([(PER_IP, "10.0.0.1")])
    assert client.commands == []
