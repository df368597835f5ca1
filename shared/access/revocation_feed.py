"""A revocation checker that answers from memory while a pub/sub feed is provably live.

Why: the per-request `EXISTS revoked:sid:<sid>` was the largest cost left on
an authenticated request (a redis-py round trip, ~0.2 ms on this machine;
bench/README.md, optimisation 4). The auth service publishes every
revocation on `<prefix>revocations` (docs/CONTRACTS.md), so a resource
server subscribed to that channel learns of each one as it happens, and only
needs Redis once per session id to learn about revocations made *before* it
subscribed.

The contract it keeps (docs/ARCHITECTURE.md, "Revocation": a revoked
session's tokens are rejected within one second), and how:

- Memory answers only while the subscription is *live*: subscribed, and a
  heartbeat PING on the subscription connection came back within
  `stale_after_seconds` (0.5 s). Otherwise every call goes to Redis
  (`fallback`), so a dropped or silently dead connection costs speed, never
  correctness. A connection stale for twice that is closed and a new one
  subscribed, with a backoff up to 5 s while Redis is away.
- A session id is remembered as "not revoked" only if the subscription was
  live, without interruption, from before its Redis check was sent until
  after its answer: any revocation after the check then arrives as a
  message, and one before it was seen by the check. Every (re)subscription
  forgets all.
- Before memory answers "not revoked", it catches up: it reads what the
  subscription connection holds, through at least one poll of the socket
  that starts after the call (`PubSub.get_message(timeout=0)` until it has
  come back empty twice). A revocation that reached this host is applied
  before the answer, so the first request after a `POST /logout` returns is
  already refused, exactly as with a Redis check per request. Concurrent
  callers share one read (`_catch_up`).
- Nothing else is cached: no profile, no claims, no token; entries are
  bounded and dropping one only costs a Redis check.

The feed is redis-py's own async `PubSub` on a plain client that `connect`
makes afresh at every (re)subscription, for whichever topology the service
uses (`RedisTopology.subscriber_factory`): the server of `REDIS_URL`
(`redis://`, `rediss://`, `unix://`), the master Sentinel names now, or one
Cluster node after another (a plain PUBLISH reaches every Cluster node, so
one subscription hears every revocation; sharded pub/sub would need the
channel in each revoking script's slot). redis-py's own retry is off on it:
a lost connection must be seen here, to forget what memory holds, not hidden
by a silent resubscription. No error turns the feed off for good (the
settings were validated at start, so a failure is the server's, and a TLS
certificate error, which Python also counts as a ValueError, is retried like
any other): it resubscribes with a backoff, checking Redis meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from shared.access.revocation import RevocationChecker
from shared.runtime.redis_topology import close_client

__all__ = ["SubscribedRevocationChecker"]

_log = logging.getLogger(__name__)


class SubscriberFactory(Protocol):
    """Makes a fresh plain client for the subscription connection."""

    def __call__(self, **options: Any) -> Redis: ...


_MAX_MESSAGES_PER_READ = 10_000  # a catch-up always ends, even under a flood


def _client_name(channel: str) -> str:
    # CLIENT LIST shows which connection is the feed (and tests find theirs).
    return "revocation-feed:" + re.sub(r"[^A-Za-z0-9:_.-]", "_", channel)[:200]


class SubscribedRevocationChecker:
    """`RevocationChecker` fed by the revocation channel; see the module docstring.

    Args:
        fallback: the per-request checker (Redis EXISTS); used whenever the
            feed is not live, and once per session id while it is.
        connect: makes the subscription's client, given connection options
            (`RedisTopology.subscriber_factory`).
        channel: `shared.access.revocation.revocation_channel(prefix)`.
        heartbeat_seconds: PING interval on the subscription.
        stale_after_seconds: no PONG for this long and memory stops answering.
        max_entries: bound of each in-memory set (both cleared when full).
        clock: monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        fallback: RevocationChecker,
        *,
        connect: SubscriberFactory,
        channel: str,
        heartbeat_seconds: float = 0.2,
        stale_after_seconds: float = 0.5,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < heartbeat_seconds < stale_after_seconds < 1.0:
            # The one-second contract needs the staleness bound well inside it.
            raise ValueError("expected 0 < heartbeat < stale_after < 1 second")
        self._fallback = fallback
        self._connect = connect
        self._channel = channel
        self.client_name = _client_name(channel)
        self._heartbeat = heartbeat_seconds
        self._stale_after = stale_after_seconds
        self._max = max_entries
        self._clock = clock
        self._client: Redis | None = None
        self._pubsub: PubSub | None = None
        self._broken = False  # the connection failed; _run replaces it
        self._subscribed = False
        self._last_pong = float("-inf")
        self._generation = 0  # bumped at every (re)subscription and loss
        self._revoked: dict[str, None] = {}  # revoked while live (ordered set)
        self._clear: dict[str, None] = {}  # checked in Redis while live, not revoked since
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Catch-up: callers wait for a read that starts after they arrived.
        self._next_read: asyncio.Future[None] | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def live(self) -> bool:
        """Whether memory may answer: subscribed, with a recent PONG."""
        return self._subscribed and self._clock() - self._last_pong < self._stale_after

    # --- RevocationChecker --------------------------------------------------------

    async def is_revoked(self, sid: str) -> bool:
        """Whether the session was revoked.

        Raises:
            RedisError, OSError: from the fallback (callers fail closed).
        """
        if self.live:
            if sid in self._revoked:
                return True
            await self._catch_up()
        if not self.live:
            return await self._fallback.is_revoked(sid)
        if sid in self._revoked:
            return True
        if sid in self._clear:
            return False
        generation = self._generation
        revoked = await self._fallback.is_revoked(sid)
        if revoked:
            self._remember_revoked(sid)
        elif generation == self._generation and self.live and sid not in self._revoked:
            # A revocation of sid arriving from now on removes it again (_apply).
            if len(self._clear) >= self._max:
                self._clear.clear()  # a dropped entry only costs a Redis check
            self._clear[sid] = None
        return revoked

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Start subscribing in the background; answers fall back until it is live."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="revocation-feed")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        self._stopping = True  # even if redis-py swallows the cancellation
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close()

    # --- memory -------------------------------------------------------------------

    def _remember_revoked(self, sid: str) -> None:
        self._clear.pop(sid, None)
        if len(self._revoked) >= self._max:
            # Forgetting a revocation must not leave its "not revoked" entry
            # behind: start over, as after a resubscription.
            self._revoked.clear()
            self._clear.clear()
        self._revoked[sid] = None

    def _forget(self) -> None:
        if self._subscribed:
            self._generation += 1
        self._subscribed = False
        self._revoked.clear()
        self._clear.clear()

    def _apply(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "message":
            data = message["data"]
            if isinstance(data, bytes):
                self._remember_revoked(data.decode(errors="replace"))
        elif kind == "pong":
            self._last_pong = self._clock()
        elif kind == "subscribe":
            # From here on every revocation reaches us: start remembering.
            self._generation += 1
            self._revoked.clear()
            self._clear.clear()
            self._subscribed = True
            self._last_pong = self._clock()

    # --- reading the subscription -----------------------------------------------------

    async def _catch_up(self) -> None:
        """Return once what the subscription held when this was called is applied."""
        waiter = self._next_read
        if waiter is None:
            waiter = self._next_read = asyncio.get_running_loop().create_future()
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read_rounds())
        # Shielded: a cancelled request must not cancel the read others wait for.
        await asyncio.shield(waiter)

    async def _read_rounds(self) -> None:
        while self._next_read is not None:
            waiter, self._next_read = self._next_read, None
            try:
                await self._read_available()
            finally:
                if not waiter.done():
                    waiter.set_result(None)

    async def _read_available(self) -> None:
        """Apply every message until the connection comes back empty twice.

        The first empty read has polled the socket once after the call
        began; what that poll received is read before the second one.
        """
        pubsub = self._pubsub
        if pubsub is None or self._broken:
            return
        empty = 0
        try:
            for _ in range(_MAX_MESSAGES_PER_READ):
                message = await pubsub.get_message(timeout=0)
                if message is None:
                    empty += 1
                    if empty == 2:
                        return
                else:
                    self._apply(message)
        except Exception as exc:  # any failure: forget, fall back, resubscribe
            if pubsub is self._pubsub and not self._broken:
                _log.warning(
                    "revocation feed lost (%s); checking Redis per request", type(exc).__name__
                )
                self._forget()
                self._broken = True  # _run closes it and subscribes again

    # --- the connection ---------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        while not self._stopping:
            try:
                await self._subscribe()
                backoff = 0.1
                while not self._stopping:
                    await self._catch_up()
                    pubsub = self._pubsub
                    if pubsub is None or self._broken:
                        break
                    if self._clock() - self._last_pong > 2 * self._stale_after:
                        _log.warning("revocation feed silent; reconnecting")
                        break
                    await pubsub.ping()
                    await asyncio.sleep(self._heartbeat)
            except (RedisError, OSError, ValueError) as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # redis-py may turn a cancelled connect into ConnectionError:
                    # aclose() is waiting, so stop rather than retry.
                    await self._close()
                    raise asyncio.CancelledError from exc
                _log.warning(
                    "revocation feed unavailable (%s); checking Redis per request",
                    type(exc).__name__,
                )
            await self._close()
            if self._stopping:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _subscribe(self) -> None:
        client = self._connect(
            client_name=self.client_name,
            # Errors must reach _read_available, not be retried into a
            # resubscription that hides the messages published meanwhile.
            retry=Retry(NoBackoff(), 0),
        )
        pubsub = client.pubsub()
        self._client, self._pubsub, self._broken = client, pubsub, False
        self._last_pong = self._clock()  # silence counts from the attempt
        await pubsub.subscribe(self._channel)

    async def _close(self) -> None:
        self._forget()
        pubsub, self._pubsub = self._pubsub, None
        client, self._client = self._client, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        if client is not None:
            with contextlib.suppress(Exception):
                await close_client(client)  # the sentinels' connections too
