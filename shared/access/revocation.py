"""Session revocation as both services see it.

The auth service writes a marker per revoked session id; resource servers
check it on every request, so a session's still-unexpired access tokens stop
working at once (docs/ARCHITECTURE.md, "Revocation": within one second). Markers live as long as an
access token could, then expire by themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

__all__ = [
    "MARKER_OUTLIVES_TOKEN_SECONDS",
    "RedisRevocationChecker",
    "RevocationChecker",
    "revocation_channel",
    "revoked_key",
]

# A revocation marker lives for the access-token lifetime plus this, so it
# outlives the `exp` of every token of the revoked session by at least this
# much. A verifier's leeway on `exp` must not be longer: a token would then
# verify again, revoked, once its marker is gone (user_service/config.py
# refuses such a TOKEN_LEEWAY_SECONDS at start).
MARKER_OUTLIVES_TOKEN_SECONDS = 60


def revoked_key(prefix: str, sid: str) -> str:
    # `{sid}` is a Redis Cluster hash tag: the marker shares its slot with the
    # session, so one script revokes both (auth_service/stores/keys.py).
    return f"{prefix}revoked:sid:{{{sid}}}"


def revocation_channel(prefix: str) -> str:
    return f"{prefix}revocations"


class _ExistsClient(Protocol):  # a Redis or a RedisCluster
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
