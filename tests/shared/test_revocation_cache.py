"""SubscribedRevocationChecker on the real Redis: fast while live, never wrong.

Each test names the contract it pins: a revocation is seen at once, one made
before the subscription is still found, and a lost or silent feed falls back
to asking Redis on every call.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from shared.access.revocation import RedisRevocationChecker, revocation_channel, revoked_key
from shared.access.revocation_feed import SubscribedRevocationChecker
from shared.runtime.redis_topology import RedisTopology
from tests.conftest import REDIS_URL
from tests.e2e.processes import free_port
from tests.support.tls import write_self_signed

pytestmark = pytest.mark.anyio


def _connect(url: str) -> Callable[..., Redis]:
    return RedisTopology("url", url=url).subscriber_factory()


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


async def feed_ids(client: Redis, checker: SubscribedRevocationChecker) -> list[str]:
    """The ids of the checker's subscription connections, found by their name."""
    listing = await client.execute_command("CLIENT", "LIST")
    text = listing.decode() if isinstance(listing, bytes) else str(listing)
    return [
        line.split("id=", 1)[1].split(" ", 1)[0]
        for line in text.splitlines()
        if f" name={checker.client_name} " in f" {line} "
    ]


async def kill_feed(client: Redis, checker: SubscribedRevocationChecker) -> str:
    """CLIENT KILL the checker's subscription connection; returns its id."""
    (feed,) = await feed_ids(client, checker)
    await client.execute_command("CLIENT", "KILL", "ID", feed)
    return str(feed)


async def live_checker(
    client: Redis, prefix: str, clock: Clock | None = None
) -> tuple[SubscribedRevocationChecker, CountingChecker]:
    fallback = CountingChecker(RedisRevocationChecker(client, prefix=prefix))
    checker = SubscribedRevocationChecker(
        fallback,
        connect=_connect(REDIS_URL),
        channel=revocation_channel(prefix),
        clock=clock or Clock(),
    )
    await checker.start()
    for _ in range(200):
        if checker.live:
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
        await kill_feed(client, checker)
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


async def test_the_feed_comes_back_after_redis_drops_it(client: Redis, redis_prefix: str) -> None:
    checker, fallback = await live_checker(client, redis_prefix)
    try:
        killed = await kill_feed(client, checker)
        for _ in range(300):  # the loss is seen at the next read; backoff starts at 0.1 s
            await asyncio.sleep(0.01)
            ids = await feed_ids(client, checker)
            if checker.live and ids and killed not in ids:
                break
        assert checker.live
        assert killed not in await feed_ids(client, checker)
        # Resubscribed: memory answers again (a loaded machine may miss a
        # heartbeat now and then, so not every call), and sees new revocations.
        sid = uuid.uuid4().hex
        from_memory = False
        for _ in range(100):  # 5 s at most: a heartbeat arrives every 0.25 s
            calls = fallback.calls
            assert not await checker.is_revoked(sid)
            if fallback.calls == calls:
                from_memory = True
                break
            await asyncio.sleep(0.05)
        assert from_memory
        revoke(redis_prefix, sid)
        assert await checker.is_revoked(sid)
    finally:
        await checker.aclose()


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A TLS-only redis-server of this module's own (rediss://), on a free port."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is required (the Debian package)")
    directory = tmp_path_factory.mktemp("tls-redis")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    write_self_signed(cert_file, key_file)
    port = free_port()
    proc = subprocess.Popen(
        [
            server,
            "--port", "0",
            "--tls-port", str(port),
            "--tls-cert-file", str(cert_file),
            "--tls-key-file", str(key_file),
            "--tls-ca-cert-file", str(cert_file),
            "--tls-auth-clients", "no",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert_file}"
    try:
        probe = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            raise AssertionError("the TLS redis-server did not start")
        probe.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_the_feed_works_over_tls(tls_redis: str, redis_prefix: str) -> None:
    tls = Redis.from_url(tls_redis)
    fallback = CountingChecker(RedisRevocationChecker(tls, prefix=redis_prefix))
    checker = SubscribedRevocationChecker(
        fallback, connect=_connect(tls_redis), channel=revocation_channel(redis_prefix)
    )
    await checker.start()
    try:
        for _ in range(300):
            if checker.live:
                break
            await asyncio.sleep(0.01)
        assert checker.live, "no live feed over rediss://"
        sid = uuid.uuid4().hex
        assert [await checker.is_revoked(sid) for _ in range(3)] == [False] * 3
        assert fallback.calls == 1
        await tls.set(revoked_key(redis_prefix, sid), "1", ex=60)
        await tls.publish(revocation_channel(redis_prefix), sid)
        assert await checker.is_revoked(sid)
        assert fallback.calls == 1
    finally:
        await checker.aclose()
        await tls.aclose()


async def test_heartbeat_must_fit_the_one_second_contract(client: Redis) -> None:
    fallback = RedisRevocationChecker(client, prefix="p:")
    with pytest.raises(ValueError, match="1 second"):
        SubscribedRevocationChecker(
            fallback, connect=_connect(REDIS_URL), channel="c", stale_after_seconds=1.5
        )


@pytest.mark.parametrize("delay", [0, 0.001, 0.003, 0.01, 0.03, 0.1])
async def test_shutdown_is_prompt_at_any_point_of_the_connection(
    client: Redis, redis_prefix: str, delay: float
) -> None:
    # A service's shutdown waits for aclose(): it must not hang whatever the
    # feed is doing (connecting, subscribing, reading, pinging).
    fallback = RedisRevocationChecker(client, prefix=redis_prefix)
    checker = SubscribedRevocationChecker(
        fallback, connect=_connect(REDIS_URL), channel=revocation_channel(redis_prefix)
    )
    await checker.start()
    await asyncio.sleep(delay)
    async with asyncio.timeout(2):
        await checker.aclose()
    assert not checker.live


async def test_a_url_the_feed_cannot_use_keeps_the_per_request_check(
    client: Redis, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    fallback = CountingChecker(RedisRevocationChecker(client, prefix=redis_prefix))
    checker = SubscribedRevocationChecker(
        fallback, connect=_connect("http://user:not-a-real-one@example.invalid/0"), channel="x"
    )
    await checker.start()
    try:
        await asyncio.sleep(0.05)
        assert not await checker.is_revoked("s")
        assert not await checker.is_revoked("s")
        assert fallback.calls == 2
        # Not off for good: it keeps trying (settings refuse such a URL at start).
        assert "revocation feed unavailable" in caplog.text
        assert "not-a-real-one" not in caplog.text
    finally:
        async with asyncio.timeout(2):
            await checker.aclose()


async def test_a_tls_certificate_error_does_not_turn_the_feed_off(
    client: Redis, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """`ssl.SSLCertVerificationError` is a ValueError too. The feed once read
    any ValueError as "REDIS_URL unusable" and stopped for good, leaving a
    rediss:// deployment on per-request checks until restarted (e.g. after a
    server certificate rotated before the CA bundle did). Now it retries."""
    connect = _connect(REDIS_URL)
    attempts = 0

    def flaky(**options: Any) -> Redis:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ssl.SSLCertVerificationError("certificate verify failed")
        return connect(**options)

    fallback = CountingChecker(RedisRevocationChecker(client, prefix=redis_prefix))
    checker = SubscribedRevocationChecker(
        fallback, connect=flaky, channel=revocation_channel(redis_prefix)
    )
    await checker.start()
    try:
        for _ in range(300):
            if checker.live:
                break
            await asyncio.sleep(0.01)
        assert checker.live, "the feed stayed off after one certificate error"
        assert attempts >= 2
        assert "revocation feed unavailable (SSLCertVerificationError)" in caplog.text
    finally:
        async with asyncio.timeout(2):
            await checker.aclose()
