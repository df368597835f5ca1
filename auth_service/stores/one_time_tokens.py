"""Single-use tokens in Redis: password reset links, email verification and
email change links (one store per `purpose`).

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

A token may carry `data` that its use needs and that must not be taken from
the request: the address a verification link proves (so a link mailed to an
old address cannot verify a new one), or the new address of an email change.
It lives under its own key beside the token, with the same lifetime.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from auth_service.stores.keys import TAG_LENGTH, TokenKeys, tag_of
from shared.runtime.redis_durable import DurableWrites
from shared.runtime.redis_topology import RedisClient, register_script

__all__ = ["OneTimeGrant", "OneTimeTokens"]

# Every key of a script shares the subject's tag: one Cluster slot
# (auth_service/stores/keys.py). Keys named by a digest are built from the
# tag's prefixes (ARGV), so they share it too.
# KEYS[1] token key, KEYS[2] subject index, KEYS[3] data key. ARGV: digest,
# subject, ttl (s), token-key prefix, data-key prefix (of this tag), data
# ("" for none).
_ISSUE = """
local old = redis.call('GET', KEYS[2])
if old then redis.call('DEL', ARGV[4] .. old, ARGV[5] .. old) end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
if ARGV[6] ~= '' then redis.call('SET', KEYS[3], ARGV[6], 'EX', ARGV[3]) end
return 1
"""

# KEYS[1] token key, KEYS[2] data key. ARGV: digest, subject-index prefix of
# this tag (the index is that plus the subject the token key names).
_CONSUME = """
local subject = redis.call('GET', KEYS[1])
if not subject then return false end
local data = redis.call('GET', KEYS[2]) or ''
redis.call('DEL', KEYS[1], KEYS[2])
local index = ARGV[2] .. subject
if redis.call('GET', index) == ARGV[1] then redis.call('DEL', index) end
return {subject, data}
"""

# KEYS[1] subject index. ARGV: token-key prefix, data-key prefix (of this tag).
_RETIRE = """
local digest = redis.call('GET', KEYS[1])
if digest then redis.call('DEL', ARGV[1] .. digest, ARGV[2] .. digest, KEYS[1]) end
return digest and 1 or 0
"""


@dataclass(frozen=True)
class OneTimeGrant:
    """What a live token stands for: its subject and the data issued with it."""

    subject: str
    data: str


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

    async def issue(self, subject: str, *, data: str = "") -> str:
        """A new token for `subject` (carrying `data`); any earlier one of
        this purpose stops working."""
        tag = self._keys.tag(subject)
        token = tag + secrets.token_urlsafe(32)
        digest = _digest(token)
        await self._issue(
            keys=[
                self._keys.token(tag, digest),
                self._keys.subject(subject),
                self._keys.data(tag, digest),
            ],
            args=[
                digest,
                subject,
                self.ttl_seconds,
                self._keys.token_prefix(tag),
                self._keys.data_prefix(tag),
                data,
            ],
        )
        return token

    async def peek(self, token: str) -> str | None:
        """The subject of a live token, without using it up."""
        grant = await self.lookup(token)
        return None if grant is None else grant.subject

    async def lookup(self, token: str) -> OneTimeGrant | None:
        """Subject and data of a live token, without using it up."""
        tag = tag_of(token, TAG_LENGTH)
        if tag is None:
            return None
        digest = _digest(token)
        subject = _s(await self._r.get(self._keys.token(tag, digest)))
        if subject is None:
            return None
        return OneTimeGrant(subject, _s(await self._r.get(self._keys.data(tag, digest))) or "")

    async def consume(self, token: str) -> str | None:
        """Use the token up; its subject, or None when unknown, used or expired."""
        grant = await self.redeem(token)
        return None if grant is None else grant.subject

    async def redeem(self, token: str) -> OneTimeGrant | None:
        """Use the token up; its subject and data, or None when unknown, used or expired."""
        tag = tag_of(token, TAG_LENGTH)
        if tag is None:
            return None
        digest = _digest(token)
        value: Any = await self._write(
            self._consume,
            [self._keys.token(tag, digest), self._keys.data(tag, digest)],
            [digest, self._keys.subject_prefix(tag)],
        )
        if not value:
            return None
        return OneTimeGrant(_s(value[0]) or "", _s(value[1]) or "")

    async def retire(self, subject: str) -> bool:
        """Void the subject's live token, if any (e.g. the password changed)."""
        tag = self._keys.tag(subject)
        return bool(
            await self._write(
                self._retire,
                [self._keys.subject(subject)],
                [self._keys.token_prefix(tag), self._keys.data_prefix(tag)],
            )
        )


def _s(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
