"""Sessions and refresh-token families in Redis.

A session (`sid`) is one login on one device; its refresh tokens form one
rotation family. Tokens are opaque, 256-bit, and stored only as SHA-256
hashes: a Redis dump does not hand out live refresh tokens. Every multi-step
update runs as one Lua script, so rotation, reuse detection and revocation
are atomic: of N concurrent refreshes with one token exactly one wins.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis

from shared.revocation import revocation_channel, revoked_key

# KEYS[1] old token, KEYS[2] new token. ARGV: prefix, now, ip, ua, marker ttl.
_ROTATE = """
local rt = redis.call('HMGET', KEYS[1], 'sid', 'user_id', 'state')
local sid, uid, state = rt[1], rt[2], rt[3]
if not sid then return {'unknown'} end
local skey = ARGV[1] .. 'sess:' .. sid
if state ~= 'active' then
  -- A rotated token came back: two parties hold this family. Revoke it all
  -- (RFC 9700 section 4.14.2); the legitimate client simply logs in again.
  redis.call('DEL', skey)
  redis.call('SREM', ARGV[1] .. 'usess:' .. uid, sid)
  redis.call('SET', ARGV[1] .. 'revoked:sid:' .. sid, '1', 'EX', ARGV[5])
  redis.call('PUBLISH', ARGV[1] .. 'revocations', sid)
  return {'reused', sid, uid}
end
local ttl = redis.call('PTTL', skey)
if ttl <= 0 then return {'unknown'} end
redis.call('HSET', KEYS[1], 'state', 'rotated')
redis.call('HSET', KEYS[2], 'sid', sid, 'user_id', uid, 'state', 'active')
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('HSET', skey, 'last_used_at', ARGV[2], 'ip', ARGV[3], 'user_agent', ARGV[4])
local s = redis.call('HMGET', skey, 'amr', 'auth_time')
return {'ok', sid, uid, s[1], s[2]}
"""

# KEYS[1] session. ARGV: prefix, sid, marker ttl, required owner ('' = any).
_REVOKE = """
local uid = redis.call('HGET', KEYS[1], 'user_id')
if not uid then return false end
if ARGV[4] ~= '' and uid ~= ARGV[4] then return false end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[1] .. 'usess:' .. uid, ARGV[2])
redis.call('SET', ARGV[1] .. 'revoked:sid:' .. ARGV[2], '1', 'EX', ARGV[3])
redis.call('PUBLISH', ARGV[1] .. 'revocations', ARGV[2])
return uid
"""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)  # 256 bits: unguessable, no structure


@dataclass(frozen=True)
class SessionInfo:
    sid: str
    user_id: str
    created_at_ms: int
    last_used_at_ms: int
    ip: str
    user_agent: str
    amr: tuple[str, ...]
    auth_time: int


@dataclass(frozen=True)
class Rotation:
    outcome: Literal["ok", "unknown", "reused"]
    sid: str = ""
    user_id: str = ""
    amr: tuple[str, ...] = ()
    auth_time: int = 0
    refresh_token: str = ""


class SessionStore:
    """Redis-backed sessions. `marker_ttl` must cover an access token's life."""

    def __init__(self, redis: Redis, *, prefix: str, session_ttl: int, marker_ttl: int) -> None:
        self._r = redis
        self._p = prefix
        self._session_ttl = session_ttl
        self._marker_ttl = marker_ttl
        self._rotate = redis.register_script(_ROTATE)
        self._revoke = redis.register_script(_REVOKE)

    def _sess(self, sid: str) -> str:
        return f"{self._p}sess:{sid}"

    def _usess(self, user_id: str) -> str:
        return f"{self._p}usess:{user_id}"

    def _rt(self, token: str) -> str:
        return f"{self._p}rt:{hash_token(token)}"

    async def create(
        self, *, user_id: str, amr: tuple[str, ...], auth_time: int, ip: str, user_agent: str
    ) -> tuple[str, str]:
        """Start a session; returns (sid, refresh token)."""
        sid = secrets.token_urlsafe(16)
        token = new_refresh_token()
        now = _now_ms()
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._sess(sid),
                mapping={
                    "user_id": user_id,
                    "created_at": now,
                    "last_used_at": now,
                    "ip": ip,
                    "user_agent": user_agent[:256],
                    "amr": " ".join(amr),
                    "auth_time": auth_time,
                },
            )
            pipe.expire(self._sess(sid), self._session_ttl)
            pipe.sadd(self._usess(user_id), sid)
            pipe.expire(self._usess(user_id), self._session_ttl)
            pipe.hset(self._rt(token), mapping={"sid": sid, "user_id": user_id, "state": "active"})
            pipe.expire(self._rt(token), self._session_ttl)
            await pipe.execute()
        return sid, token

    async def rotate(self, token: str, *, ip: str, user_agent: str) -> Rotation:
        new_token = new_refresh_token()
        res: list[Any] = await self._rotate(
            keys=[self._rt(token), self._rt(new_token)],
            args=[self._p, _now_ms(), ip, user_agent[:256], self._marker_ttl],
        )
        outcome = _s(res[0])
        if outcome == "unknown":
            return Rotation("unknown")
        if outcome == "reused":
            return Rotation("reused", sid=_s(res[1]), user_id=_s(res[2]))
        return Rotation(
            "ok",
            sid=_s(res[1]),
            user_id=_s(res[2]),
            amr=tuple(_s(res[3] or b"").split()),
            auth_time=int(_s(res[4] or b"0")),
            refresh_token=new_token,
        )

    async def revoke(self, sid: str, *, owner: str | None = None) -> bool:
        """Revoke one session; with `owner`, only if it belongs to that user."""
        uid = await self._revoke(
            keys=[self._sess(sid)], args=[self._p, sid, self._marker_ttl, owner or ""]
        )
        return uid is not None

    async def revoke_all(self, user_id: str, *, keep: str | None = None) -> int:
        """Revoke every session of `user_id` (but `keep`, the caller's own, if given).

        Each revocation is published on the revocation channel, so resource
        servers refuse the sessions' access tokens within a second.
        """
        count = 0
        for sid in await self._r.smembers(self._usess(user_id)):
            if _s(sid) != keep:
                count += await self.revoke(_s(sid), owner=user_id)
        return count

    async def is_revoked(self, sid: str) -> bool:
        return bool(await self._r.exists(revoked_key(self._p, sid)))

    async def list(self, user_id: str) -> list[SessionInfo]:
        sids = [_s(s) for s in await self._r.smembers(self._usess(user_id))]
        if not sids:
            return []
        async with self._r.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.hgetall(self._sess(sid))
            rows = await pipe.execute()
        out: list[SessionInfo] = []
        gone: list[str] = []
        for sid, row in zip(sids, rows, strict=True):
            if not row:
                gone.append(sid)  # expired session: tidy the index lazily
                continue
            d = {_s(k): _s(v) for k, v in row.items()}
            out.append(
                SessionInfo(
                    sid=sid,
                    user_id=d["user_id"],
                    created_at_ms=int(d.get("created_at", 0)),
                    last_used_at_ms=int(d.get("last_used_at", 0)),
                    ip=d.get("ip", ""),
                    user_agent=d.get("user_agent", ""),
                    amr=tuple(d.get("amr", "").split()),
                    auth_time=int(d.get("auth_time", 0)),
                )
            )
        if gone:
            await self._r.srem(self._usess(user_id), *gone)
        return sorted(out, key=lambda s: s.created_at_ms, reverse=True)

    @property
    def channel(self) -> str:
        return revocation_channel(self._p)


def _now_ms() -> int:
    # Milliseconds: two logins in one second still list in the order they happened.
    return int(time.time() * 1000)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
