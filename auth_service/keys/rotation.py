"""Scheduled key rotation inside the auth service: no operator window.

Every replica runs `RotationSchedule.tick` now and then; the one that takes
the Redis lock (redis-py's `Lock`, one key: the same on Sentinel and Cluster)
looks at the key store (the shared key directory or the database,
`auth_service.keys.store`) and, when the newest key is due to be replaced,
adds a successor that is published at once and signs only
`activation_delay_seconds` later; it also prunes keys whose tokens have all
expired. The lock only keeps two replicas from rotating in the same
interval; the store still serialises its writers (the directory's `flock`,
the database's transaction lock).

Why the delay is safe (docs/OPERATIONS.md, "Scheduled rotation"): a key
signs only after every replica has reloaded it (`KEY_RELOAD_SECONDS`), every
HTTP cache has dropped a JWKS without it (`JWKS_MAX_AGE_SECONDS`), and every
resource server may refetch on its unknown kid (`JWKS_MIN_REFETCH_SECONDS`
at the user service, which the operator keeps below the delay). A key is
removed only when its successor has signed for longer than the longest token
lifetime plus the verifiers' largest leeway and a reload: no unexpired token
names it then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import LockError

from auth_service.keys.directory import Clock, KeyEntry, SigningKey
from auth_service.keys.store import KeyStore

__all__ = ["RotationOutcome", "RotationPolicy", "RotationSchedule", "rotation_due"]

_log = logging.getLogger(__name__)

# Longer than a rotation's work (an RSA key generation and two file writes):
# a replica that dies holding the lock frees it after this.
_LOCK_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True, kw_only=True)
class RotationPolicy:
    """When to add a key, when it signs, when an old one goes.

    Attributes:
        interval_seconds: how long a key signs before its successor takes over.
        activation_delay_seconds: from publication to first signature.
        retire_after_seconds: how long a successor must have signed before
            the key it replaced is removed.
        bits: RSA modulus size of new keys.
    """

    interval_seconds: float
    activation_delay_seconds: float
    retire_after_seconds: float
    bits: int = 2048

    def __post_init__(self) -> None:
        if not 0 < self.activation_delay_seconds < self.interval_seconds:
            raise ValueError(
                "expected 0 < activation delay < rotation interval, got "
                f"{self.activation_delay_seconds} and {self.interval_seconds}"
            )


def rotation_due(entries: Sequence[KeyEntry], policy: RotationPolicy, now: float) -> bool:
    """Whether a successor should be published now.

    Due when no key is pending and the newest active key will have signed for
    `interval_seconds` by the time a key published now activates. No key at
    all is not "due": production's first key is the operator's.
    """
    if any(e.activates_at > now for e in entries):
        return False  # a successor is already on its way
    active = [e.activates_at for e in entries if e.activates_at <= now]
    if not active:
        return False
    return max(active) + policy.interval_seconds <= now + policy.activation_delay_seconds


@dataclass(frozen=True)
class RotationOutcome:
    """What one tick did (`locked` False: another replica held the lock)."""

    locked: bool
    added: SigningKey | None = None
    removed: tuple[str, ...] = ()


class _LockingClient(Protocol):
    def lock(self, name: str, *, timeout: float | None = ..., blocking: bool = ...) -> _Lock: ...


class _Lock(Protocol):
    async def acquire(self, *, blocking: bool | None = ...) -> bool: ...
    async def release(self) -> None: ...


class RotationSchedule:
    """One replica's share of scheduled rotation; see the module docstring."""

    def __init__(
        self,
        store: KeyStore,
        policy: RotationPolicy,
        *,
        redis: _LockingClient,
        lock_name: str,
        clock: Clock = time.time,
    ) -> None:
        self._store = store
        self._policy = policy
        self._redis = redis
        self._lock_name = lock_name
        self._clock = clock

    async def tick(self) -> RotationOutcome:
        """Rotate and prune if due, under the Redis lock; a no-op without it.

        Raises:
            RedisError, OSError, ValueError, SQLAlchemyError, NoSigningKeys: Redis
                or the key store failed; the next tick tries again.
        """
        lock = self._redis.lock(self._lock_name, timeout=_LOCK_TIMEOUT_SECONDS, blocking=False)
        if not await lock.acquire(blocking=False):
            return RotationOutcome(locked=False)
        try:
            # Decided from the store itself, under the lock: never from a
            # replica's possibly older in-memory ring.
            added = None
            if rotation_due(await self._store.entries(), self._policy, self._clock()):
                added = await self._store.rotate(
                    activate_after_seconds=int(self._policy.activation_delay_seconds),
                    clock=self._clock,
                    bits=self._policy.bits,
                )
                _log.info(
                    "rotated the signing key: %s published, signs from %.0f",
                    added.kid,
                    added.activates_at,
                )
            removed = await self._store.prune(
                older_than_seconds=int(self._policy.retire_after_seconds), clock=self._clock
            )
            return RotationOutcome(locked=True, added=added, removed=tuple(removed))
        finally:
            try:
                await lock.release()
            except LockError:
                # The lock timed out under us: another replica may hold it now,
                # which only costs it one more look at a store it can see.
                _log.warning("key rotation lock expired before its release")
