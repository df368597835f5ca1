"""Session revocation as both services see it.

The auth service writes a marker per revoked session id; resource servers
check it on every request, so a session's still-unexpired access tokens stop
working at once (docs/ARCHITECTURE.md, "Revocation": within one second). Markers live as long as an
access token could, then expire by themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

__all__ = ["RedisRevocationChecker", "RevocationChecker", "revocation_channel", "revoked_key"]


def revoked_key(prefix: str, sid: str) -> str:
    return f"{prefix}revoked:sid:{sid}"


def revocation_channel(prefix: str) -> str:
    return f"{prefix}revocations"


class _ExistsClient(Protocol):
    def exists(self, *names: str) -> Awaitable[int]: ...


class RevocationChecker(Protocol):
    async def is_revoked(self, sid: str) -> bool: ...


class RedisRevocationChecker:
    """Asks Redis whether a session was revoked.

    Redis errors propagate: callers fail closed (503) rather than accept a
    token whose session may have been revoked.
    """

    def __init__(self, redis: _ExistsClient, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def is_revoked(self, sid: str) -> bool:
        return bool(await self._redis.exists(revoked_key(self._prefix, sid)))
