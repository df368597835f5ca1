"""Single-use tokens in Redis: password reset links now, email verification
links later (one store per `purpose`).

A token is 256 random bits handed to its holder once (in a mail) and kept
here only as its SHA-256 digest: a Redis dump or replica does not hand out
live reset links. The digest is the lookup key, so no secret is ever compared
byte by byte in Python: an attacker timing the lookup learns about digests
of their own guesses, which says nothing about a real token (preimage
resistance), the same reasoning as the refresh tokens in sessions.py. A plain
hash suffices (no HMAC key): with 256-bit random input there is nothing to
brute-force offline.

Each subject (account) has at most one live token per purpose: issuing a new
one retires the old, so only the newest mail works. Consuming is one Lua
script (read + delete), so of two concurrent uses exactly one wins.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from auth_service.stores.keys import TAG_LENGTH, TokenKeys, tag_of
from shared.runtime.redis_durable import DurableWrites
from shared.runtime.redis_topology import RedisClient, register_script

__all__ = ["OneTimeTokens"]

# Both keys of a script share the subject's tag: one Cluster slot
# (auth_service/stores/keys.py); the old token's key is built from the
# index's tag (ARGV[4]) and so shares it too.
# KEYS[1] token key, KEYS[2] subject index. ARGV: digest, subject, ttl (s),
# token-key prefix of this tag.
_ISSUE = """
local old = redis.call('GET', KEYS[2])
if old then redis.call('DEL', ARGV[4] .. old) end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
return 1
"""

# KEYS[1] token key, KEYS[2] the index of the subject it names (read from
# the token key first: the caller passes the index it expects, and the
# script checks). ARGV: digest.
_CONSUME = """
local subject = redis.call('GET', KEYS[1])
if not subject then return false end
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return subject
"""

# KEYS[1] subject index. ARGV: token-key prefix of this tag.
_RETIRE = """
local digest = redis.call('GET', KEYS[1])
if digest then redis.call('DEL', ARGV[1] .. digest, KEYS[1]) end
return digest and 1 or 0
"""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class OneTimeTokens:
    """Args:
    redis: the client (its connection pool is shared).
    prefix: the deployment's key prefix (`REDIS_PREFIX`).
    purpose: namespace of this kind of token, e.g. `reset`.
    ttl_seconds: how long an unused token lives.
    durable: runs consumption and retirement (single use must survive a
        failover: a lost consumption would make a used link work again);
        default: no WAIT.

    A token is a tag, then the secret: the tag (auth_service/stores/keys.py)
    routes it to its subject's Cluster slot without naming the subject.
    """

    def __init__(
        self,
        redis: RedisClient,
        *,
        prefix: str,
        purpose: str,
        ttl_seconds: int,
        durable: DurableWrites | None = None,
    ) -> None:
        self._r = redis
        self._keys = TokenKeys(prefix, purpose)
        self.ttl_seconds = ttl_seconds
        self._durable = durable
        self._issue = register_script(redis, _ISSUE)
        self._consume = register_script(redis, _CONSUME)
        self._retire = register_script(redis, _RETIRE)

    async def _write(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        if self._durable is None:
            return await script(keys=keys, args=args)
        return await self._durable.run(script, keys=keys, args=args)

    def _token_key(self, token: str) -> str | None:
        tag = tag_of(token, TAG_LENGTH)
        if tag is None:
            return None
        return self._keys.token(tag, _digest(token))

    async def issue(self, subject: str) -> str:
        """A new token for `subject`; any earlier one of this purpose stops working."""
        tag = self._keys.tag(subject)
        token = tag + secrets.token_urlsafe(32)
        digest = _digest(token)
        await self._issue(
            keys=[self._keys.token(tag, digest), self._keys.subject(subject)],
            args=[digest, subject, self.ttl_seconds, self._keys.token_prefix(tag)],
        )
        return token

    async def peek(self, token: str) -> str | None:
        """The subject of a live token, without using it up."""
        key = self._token_key(token)
        if key is None:
            return None
        value: Any = await self._r.get(key)
        return _s(value)

    async def consume(self, token: str) -> str | None:
        """Use the token up; its subject, or None when unknown, used or expired."""
        key = self._token_key(token)
        if key is None:
            return None
        subject = await self.peek(token)
        if subject is None:
            return None
        # The index key comes from the subject read above; the script only
        # deletes it if it still names this token, so a stale read is harmless.
        value: Any = await self._write(
            self._consume, [key, self._keys.subject(subject)], [_digest(token)]
        )
        return _s(value)

    async def retire(self, subject: str) -> bool:
        """Void the subject's live token, if any (e.g. the password changed)."""
        tag = self._keys.tag(subject)
        return bool(
            await self._write(
                self._retire, [self._keys.subject(subject)], [self._keys.token_prefix(tag)]
            )
        )


def _s(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
