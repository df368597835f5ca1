"""Pending authorization requests and authorization codes in Redis (RFC 6749 §4.1).

A request (`GET /authorize`, validated) waits under a random id while the
user signs in on the page; it is taken once. A code is stored only as its
SHA-256 hash, lives seconds, and is redeemed once by one Lua script: a
second presentation finds it spent and learns which session it issued, so
that session can be revoked (RFC 6749 §4.1.2).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from auth_service.stores.keys import AuthorizationKeys
from shared.runtime.redis_durable import DurableWrites
from shared.runtime.redis_topology import RedisClient, register_script

# Every script touches its one key, tagged with its own digest
# (auth_service/stores/keys.py). KEYS[1] the code. ARGV: seconds a spent
# code is remembered (replay detection).
_REDEEM = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'unknown'} end
if state == 'issued' then
  redis.call('HSET', KEYS[1], 'state', 'redeemed')
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  return {'ok', redis.call('HGET', KEYS[1], 'data')}
end
redis.call('HSET', KEYS[1], 'replayed', '1')
local sid = redis.call('HGET', KEYS[1], 'sid') or ''
return {'reused', sid, redis.call('HGET', KEYS[1], 'user_id') or ''}
"""

# KEYS[1] the code. ARGV: the session it issued. Returns 1 when a replay
# arrived in between (the caller then revokes that session itself).
_BIND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 1 end
redis.call('HSET', KEYS[1], 'sid', ARGV[1])
if redis.call('HGET', KEYS[1], 'replayed') then return 1 end
return 0
"""


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Redemption:
    outcome: Literal["ok", "unknown", "reused"]
    record: dict[str, Any] | None = None
    sid: str | None = None
    user_id: str | None = None


class AuthorizationStore:
    """Redis-backed authorization requests and codes.

    Args:
        request_ttl: seconds a user has to sign in after `GET /authorize`.
        code_ttl: seconds a code may be redeemed in (RFC 6749 §4.1.2: short).
        replay_ttl: seconds a spent code is remembered, to catch a replay.
        durable: runs redemption and the session binding: a failover that
            lost either would let a spent code be redeemed again, or a
            replay go unpunished; default: no WAIT.
    """

    def __init__(
        self,
        redis: RedisClient,
        *,
        prefix: str,
        request_ttl: int,
        code_ttl: int,
        replay_ttl: int,
        durable: DurableWrites | None = None,
    ) -> None:
        self._r = redis
        self._keys = AuthorizationKeys(prefix)
        self._request_ttl = request_ttl
        self._code_ttl = code_ttl
        self._replay_ttl = replay_ttl
        self._durable = durable
        self._redeem = register_script(redis, _REDEEM)
        self._bind = register_script(redis, _BIND)

    async def _security_write(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        if self._durable is None:
            return await script(keys=keys, args=args)
        return await self._durable.run(script, keys=keys, args=args)

    def _req(self, request_id: str) -> str:
        return self._keys.request(_hash(request_id))

    def _code(self, code: str) -> str:
        return self._keys.code(_hash(code))

    async def save_request(self, request: dict[str, Any]) -> str:
        request_id = secrets.token_urlsafe(32)
        await self._r.set(self._req(request_id), json.dumps(request), ex=self._request_ttl)
        return request_id

    async def peek_request(self, request_id: str) -> dict[str, Any] | None:
        raw = await self._r.get(self._req(request_id))
        return None if raw is None else dict(json.loads(raw))

    async def take_request(self, request_id: str) -> dict[str, Any] | None:
        """The pending request, removed: each is answered once."""
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.get(self._req(request_id))
            pipe.delete(self._req(request_id))
            raw, _ = await pipe.execute()
        return None if raw is None else dict(json.loads(raw))

    async def issue_code(self, record: dict[str, Any]) -> str:
        code = secrets.token_urlsafe(32)  # 256 bits (RFC 6749 §10.10)
        key = self._code(code)
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "state": "issued",
                    "data": json.dumps(record),
                    "user_id": str(record["user_id"]),
                },
            )
            pipe.expire(key, self._code_ttl)
            await pipe.execute()
        return code

    async def redeem(self, code: str) -> Redemption:
        res: list[Any] = await self._security_write(
            self._redeem, [self._code(code)], [self._replay_ttl]
        )
        outcome = _s(res[0])
        if outcome == "ok":
            return Redemption("ok", record=dict(json.loads(_s(res[1]))))
        if outcome == "reused":
            return Redemption("reused", sid=_s(res[1]) or None, user_id=_s(res[2]) or None)
        return Redemption("unknown")

    async def bind_session(self, code: str, sid: str) -> bool:
        """Record the session a redeemed code issued; False if it was replayed meanwhile."""
        replayed = await self._security_write(self._bind, [self._code(code)], [sid])
        return not int(replayed)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
