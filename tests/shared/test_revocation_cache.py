"""SubscribedRevocationChecker on the real Redis: fast while live, never wrong.

Each test names the contract it pins: a revocation is seen at once, one made
before the subscription is still found, and a lost or silent feed falls back
to asking Redis on every call.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis
from redis.asyncio import Redis

from shared.revocation import RedisRevocationChecker, revocation_channel, revoked_key
from shared.revocation_cache import SubscribedRevocationChecker
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.anyio


class CountingChecker:
    """The per-request checker, counting how often it is asked."""

    def __init__(self, inner: RedisRevocationChecker) -> None:
        self.inner = inner
        self.calls = 0

    async def is_revoked(self, sid: str) -> bool:
        self.calls += 1
        return await self.inner.is_revoked(sid)


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return asyncio.get_running_loop().time() + self.offset


@pytest.fixture
async def client() -> AsyncIterator[Redis]:
    r = Redis.from_url(REDIS_URL)
    yield r
    await r.aclose()


def revoke(prefix: str, sid: str) -> None:
    """What the auth service's revoke script does: marker, then publish."""
    r = redis.Redis.from_url(REDIS_URL)
    try:
        r.set(revoked_key(prefix, sid), "1", ex=60)
        r.publish(revocation_channel(prefix), sid)
    finally:
        r.close()


async def live_checker(
    client: Redis, prefix: str, clock: Clock | None = None
) -> tuple[SubscribedRevocationChecker, CountingChecker]:
    fallback = CountingChecker(RedisRevocationChecker(client, prefix=prefix))
    checker = SubscribedRevocationChecker(
        fallback,
        redis_url=REDIS_URL,
        channel=revocation_channel(prefix),
        clock=clock or Clock(),
    )
    await checker.start()
    for _ in range(200):
        if checker._live():
            return checker, fallback
        await asyncio.sleep(0.01)
    raise AssertionError("the revocation feed never became live")


async def test_live_feed_asks_redis_once_per_session(client: Redis, redis_prefix: str) -> None:
    checker, fallback = await live_checker(client, redis_prefix)
    try:
        sid = uuid.uuid4().hex
        assert [await checker.is_revoked(sid) for _ in range(5)] == [False] * 5
        assert fallback.calls == 1
    finally:
        await checker.aclose()


async def test_revocation_is_seen_by_the_very_next_call(client: Redis, redis_prefix: str) -> None:
    checker, fallback = await live_checker(client, redis_prefix)
    try:
        sid = uuid.uuid4().hex
        assert not await checker.is_revoked(sid)
        revoke(redis_prefix, sid)  # no await in between: the socket drain must catch it
        assert await checker.is_revoked(sid)
        assert fallback.calls == 1
    finally:
        await checker.aclose()


async def test_revocation_before_the_subscription_is_found(
    client: Redis, redis_prefix: str
) -> None:
    sid = uuid.uuid4().hex
    revoke(redis_prefix, sid)
    checker, _ = await live_checker(client, redis_prefix)
    try:
        assert await checker.is_revoked(sid)
    finally:
        await checker.aclose()


async def test_dropped_feed_falls_back_to_redis_on_every_call(
    client: Redis, redis_prefix: str
) -> None:
    checker, fallback = await live_checker(client, redis_prefix)
    try:
        sid = uuid.uuid4().hex
        assert not await checker.is_revoked(sid)
        # Kill exactly our subscription connection (other suites share this Redis).
        sock = checker._sock
        assert sock is not None
        host, port = sock.getsockname()[:2]
        await client.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")
        await asyncio.sleep(0.05)
        # While the feed is down a revocation publishes to nobody...
        revoke(redis_prefix, sid)
        calls = fallback.calls
        # ...and is still found, because every call asks Redis again.
        assert await checker.is_revoked(sid)
        assert fallback.calls == calls + 1
    finally:
        await checker.aclose()


async def test_silent_feed_stops_answering_from_memory(client: Redis, redis_prefix: str) -> None:
    clock = Clock()
    checker, fallback = await live_checker(client, redis_prefix, clock)
    try:
        sid = uuid.uuid4().hex
        assert not await checker.is_revoked(sid)
        calls = fallback.calls
        clock.offset = 0.6  # no PONG for longer than stale_after (0.5 s)
        assert not await checker.is_revoked(sid)
        assert fallback.calls == calls + 1
    finally:
        await checker.aclose()


async def test_non_redis_urls_keep_the_per_request_check(client: Redis, redis_prefix: str) -> None:
    fallback = CountingChecker(RedisRevocationChecker(client, prefix=redis_prefix))
    checker = SubscribedRevocationChecker(
        fallback, redis_url="rediss://example.invalid:6380/0", channel="x"
    )
    await checker.start()
    try:
        assert not await checker.is_revoked("s")
        assert not await checker.is_revoked("s")
        assert fallback.calls == 2
    finally:
        await checker.aclose()


async def test_heartbeat_must_fit_the_one_second_contract(client: Redis) -> None:
    fallback = RedisRevocationChecker(client, prefix="p:")
    with pytest.raises(ValueError, match="1 second"):
        SubscribedRevocationChecker(
            fallback, redis_url=REDIS_URL, channel="c", stale_after_seconds=1.5
        )
