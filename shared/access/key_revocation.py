"""Signing keys revoked in an emergency, as both services see them.

A compromised signing key is taken out of the key directory and its kid is
written to one Redis hash, `<prefix>revoked:kids` (kid -> Unix time of the
revocation), by `python -m auth_service.keys revoke` (docs/OPERATIONS.md,
"Emergency revocation of a signing key"). Every process keeps the set in
memory and re-reads it at least every `poll_seconds` (0.25 s): a key
revocation is rare, so one tiny read per process per poll costs nothing, and
unlike a pub/sub message it cannot be missed while a connection is down.

The promise: a token signed by a revoked key is refused within one second of
the revocation. `DenyRevokedKeys` wraps a verifier's key source and answers
"no such key" for a revoked kid; when the set is older than
`stale_after_seconds` it is read again on the request, and if Redis cannot
answer, verification fails closed (`KeysUnavailable`, a 503), never open.

One hash key, no multi-key command: the same on one Redis, Sentinel or a
Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from shared.tokens.verify import KeySource, KeysUnavailable

__all__ = ["DenyRevokedKeys", "RevokedKeys", "revoked_kids_key"]

_log = logging.getLogger(__name__)


def revoked_kids_key(prefix: str) -> str:
    return f"{prefix}revoked:kids"


class _HashClient(Protocol):
    def hkeys(self, name: str) -> Awaitable[list[bytes | str]]: ...


class RevokedKeys:
    """The revoked kids, read from Redis; see the module docstring.

    Args:
        redis: the service's Redis client.
        prefix: `REDIS_PREFIX`.
        poll_seconds: how often the background task (`start`) re-reads the set.
        stale_after_seconds: older than this, a lookup re-reads it first; it
            must stay well under the one-second promise.
        on_change: awaited with the new set when kids were added (the auth
            service reloads its key ring, the user service refetches the JWKS).
        clock: monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        redis: _HashClient,
        *,
        prefix: str,
        poll_seconds: float = 0.25,
        stale_after_seconds: float = 0.5,
        on_change: Callable[[frozenset[str]], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < poll_seconds <= stale_after_seconds < 1.0:
            raise ValueError("expected 0 < poll <= stale_after < 1 second")
        self._redis = redis
        self._key = revoked_kids_key(prefix)
        self._poll = poll_seconds
        self._stale_after = stale_after_seconds
        self._on_change = on_change
        self._clock = clock
        self._kids: frozenset[str] = frozenset()
        self._read_at = float("-inf")
        self._failed_at = float("-inf")
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._reactions: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def kids(self) -> frozenset[str]:
        """The revoked kids as last read (possibly stale)."""
        return self._kids

    async def current(self) -> frozenset[str]:
        """The revoked kids, read again first when the copy is stale.

        Raises:
            RedisError, OSError: Redis could not answer (callers fail closed).
        """
        if self._clock() - self._read_at >= self._stale_after:
            await self.read()
        return self._kids

    async def read(self) -> frozenset[str]:
        """Read the set now; callers that queued behind a read share its outcome.

        Raises:
            RedisError, OSError: Redis could not answer (now, or for the read
                that just failed: a frozen Redis must not cost each queued
                request its own socket timeout).
        """
        started = self._clock()
        async with self._lock:
            if self._read_at >= started:
                return self._kids  # a read that began after us already answered
            if self._failed_at >= started:
                raise RedisConnectionError("the revoked signing keys could not be read")
            try:
                raw = await self._redis.hkeys(self._key)
            except (RedisError, OSError):
                self._failed_at = self._clock()
                raise
            kids = frozenset(k.decode(errors="replace") if isinstance(k, bytes) else k for k in raw)
            added = kids - self._kids
            self._kids, self._read_at = kids, started
        if added:
            _log.warning("signing keys revoked: %s", ", ".join(sorted(added)))
            if self._on_change is not None:
                # In the background: the read may be a request's, which must
                # not wait for a reload or a JWKS refetch.
                task = asyncio.create_task(self._react(kids))
                self._reactions.add(task)
                task.add_done_callback(self._reactions.discard)
        return kids

    async def _react(self, kids: frozenset[str]) -> None:
        assert self._on_change is not None
        try:
            await self._on_change(kids)
        except Exception:
            _log.exception("reacting to a key revocation failed")

    async def start(self) -> None:
        """Poll in the background; lookups still read on demand when it lags."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="revoked-keys")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        self._stopping = True  # even if redis-py swallows the cancellation
        for t in [*self._reactions, *([task] if task is not None else [])]:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.read()
            except (RedisError, OSError) as exc:
                task = asyncio.current_task()
                if self._stopping or (task is not None and task.cancelling()):
                    # redis-py may turn the cancellation of aclose() into a
                    # ConnectionError: stop rather than poll on.
                    raise asyncio.CancelledError from exc
                _log.warning("revoked signing keys unreadable (%s)", type(exc).__name__)
            await asyncio.sleep(self._poll)


class DenyRevokedKeys:
    """A `KeySource` that knows no revoked kid, whatever the wrapped source holds.

    A JWKS cache may still hold a revoked key for minutes; this makes every
    token it signed fail verification as an unknown kid from the moment the
    revocation is read.
    """

    def __init__(self, source: KeySource, revoked: RevokedKeys) -> None:
        self._source = source
        self._revoked = revoked

    async def get_key(self, kid: str) -> RSAPublicKey | None:
        """The wrapped source's key, or None for a revoked kid.

        Raises:
            KeysUnavailable: the revoked set is stale and Redis cannot answer;
                fail closed rather than accept a key that may be revoked.
        """
        try:
            revoked = await self._revoked.current()
        except (RedisError, OSError):
            raise KeysUnavailable("the revoked signing keys could not be read") from None
        if kid in revoked:
            return None
        return await self._source.get_key(kid)
