"""Sessions and refresh-token families in Redis.

A session (`sid`) is one login on one device; its refresh tokens form one
rotation family. Tokens are opaque, 256-bit, and stored only as SHA-256
hashes: a Redis dump does not hand out live refresh tokens. Every multi-step
update runs as one Lua script, so rotation, reuse detection and revocation
are atomic: of N concurrent refreshes with one token exactly one successor is
minted (the others, within the retry grace, get that same successor back;
after it, they are reuse).

A rotated token remembers its successor for the retry grace window, sealed
(AES-GCM) under a key derived from the rotated token itself: only a holder of
that token can open it, so the dump still hands out nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.asyncio.cluster import RedisCluster
from redis.typing import EncodableT, FieldT

from auth_service.stores.keys import OWNER_LENGTH, SID_LENGTH, SessionKeys, tag_of
from shared.access.revocation import revocation_channel
from shared.runtime.redis_durable import DurableWrites
from shared.runtime.redis_topology import RedisClient, register_script

# Every key below carries the session's `{sid}` tag: one Cluster slot
# (auth_service/stores/keys.py). KEYS[1] presented token, KEYS[2] its
# would-be successor, KEYS[3] the session, KEYS[4] its revocation marker.
# ARGV: prefix of this session's refresh records, now ms, ip, ua, marker ttl,
# idle ms (0: no idle limit), retry grace ms, client id presented, client id
# of records made before the binding, the successor sealed under the
# presented token, the successor's hash, the revocation channel, sid, the
# owner the caller read the account of ('' = any).
_ROTATE = """
local now = tonumber(ARGV[2])
local rt = redis.call('HMGET', KEYS[1], 'sid', 'user_id', 'state', 'client_id',
                      'next', 'rotated_at', 'sealed')
local sid, uid, state = rt[1], rt[2], rt[3]
if not sid or sid ~= ARGV[13] then return {'unknown'} end
-- The caller vetted this account before the commit: a record of anyone
-- else's is not rotated on that account's say-so.
if ARGV[14] ~= '' and uid ~= ARGV[14] then return {'unknown'} end
-- Bound to the client it was issued to (RFC 6749 section 6). Checked first
-- and changing nothing: another client's presentation is no theft signal.
if (rt[4] or ARGV[9]) ~= ARGV[8] then return {'wrong_client'} end
local skey = KEYS[3]
local function revoke()
  redis.call('DEL', skey)
  redis.call('SET', KEYS[4], '1', 'EX', ARGV[5])
  -- Plain PUBLISH: a Cluster broadcasts it to every node, where the
  -- resource servers' feeds listen (shared/access/revocation_feed.py).
  redis.call('PUBLISH', ARGV[12], sid)
end
local function touch()
  redis.call('HSET', skey, 'last_used_at', ARGV[2], 'ip', ARGV[3], 'user_agent', ARGV[4])
  return redis.call('HMGET', skey, 'amr', 'auth_time', 'scope')
end
if state ~= 'active' then
  -- The retry of a rotation whose answer was lost (a reply timeout, a 5xx
  -- after the commit): within the grace window, and while the successor
  -- has never been used, the presenter gets that same successor back. No
  -- second branch exists, so nothing forks; a later double use of the
  -- successor is still reuse. (The successor's record shares the tag.)
  if state == 'rotated' and rt[5] and rt[6] and now - tonumber(rt[6]) < tonumber(ARGV[7])
     and redis.call('HGET', ARGV[1] .. rt[5], 'state') == 'active'
     and redis.call('PTTL', skey) > 0 then
    local s = touch()
    return {'retry', sid, uid, s[1], s[2], rt[7], s[3]}
  end
  -- A rotated token came back: two parties hold this family. Revoke it all
  -- (RFC 9700 section 4.14.2); the legitimate client simply logs in again.
  revoke()
  return {'reused', sid, uid}
end
local ttl = redis.call('PTTL', skey)
if ttl <= 0 then return {'unknown'} end
local idle = tonumber(ARGV[6])
if idle > 0 and now - tonumber(redis.call('HGET', skey, 'last_used_at') or '0') > idle then
  -- Idle too long (ASVS 7.3.1): the session ends, not only this token.
  revoke()
  return {'idle', sid, uid}
end
redis.call('HSET', KEYS[1], 'state', 'rotated', 'next', ARGV[11], 'rotated_at', ARGV[2],
           'sealed', ARGV[10])
redis.call('HSET', KEYS[2], 'sid', sid, 'user_id', uid, 'state', 'active',
           'client_id', rt[4] or ARGV[9])
redis.call('PEXPIRE', KEYS[2], ttl)
local s = touch()
return {'ok', sid, uid, s[1], s[2], '', s[3]}
"""

# KEYS[1] session, KEYS[2] its revocation marker (one `{sid}` slot). ARGV:
# sid, marker ttl, required owner ('' = any), the revocation channel. The
# user's session index is another slot: SessionStore.revoke tidies it after.
_REVOKE = """
local uid = redis.call('HGET', KEYS[1], 'user_id')
if not uid then return false end
if ARGV[3] ~= '' and uid ~= ARGV[3] then return false end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return uid
"""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_SECRET_LENGTH = 43  # secrets.token_urlsafe(32)


def new_refresh_token(sid: str, user_id: str | None = None) -> str:
    """The sid, the owner's id (when it is a UUID), then 256 random bits.

    Unguessable; the sid in front only routes the lookup to the session's
    Cluster slot, and the owner's id lets a refresh read the account without
    first asking Redis whose token it is (`owner_hint`). Neither is a secret
    from the token's holder: every access token of the session carries both
    (`sid`, `sub`). The record's key is the hash of the whole token, so
    neither part can be changed without making the token unknown.
    """
    assert len(sid) == SID_LENGTH
    owner = _owner_part(user_id)
    return sid + owner + secrets.token_urlsafe(32)


def _owner_part(user_id: str | None) -> str:
    # 22 base64url characters for a UUID; nothing for any other id (tests
    # use plain strings), whose tokens take the lookup path.
    try:
        raw = uuid.UUID(user_id).bytes if user_id else None
    except ValueError:
        raw = None
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode() if raw else ""


def owner_hint(token: str) -> str | None:
    """The owner's id a refresh token carries, unverified; None for a token
    that carries none (one minted before tokens did, or no token of ours).

    A hint only: the rotation checks it against the record (`rotate`'s
    `owner`), and the record is found by the hash of the whole token.
    """
    if len(token) != SID_LENGTH + OWNER_LENGTH + _SECRET_LENGTH:
        return None
    part = token[SID_LENGTH : SID_LENGTH + OWNER_LENGTH]
    try:
        return str(uuid.UUID(bytes=base64.urlsafe_b64decode(part + "==")))
    except (binascii.Error, ValueError):
        return None


# Each key seals exactly one successor (a token is rotated once), so a fixed
# nonce never repeats under one key.
_SEAL_NONCE = bytes(12)


def _seal_key(token: str) -> bytes:
    # The token is 256 random bits: one hash is a sound KDF for it, and the
    # label keeps this key apart from the token's storage hash.
    return hashlib.sha256(b"idp refresh successor v1\0" + token.encode()).digest()


def seal_successor(token: str, successor: str) -> str:
    sealed = AESGCM(_seal_key(token)).encrypt(_SEAL_NONCE, successor.encode(), None)
    return base64.b64encode(sealed).decode()


def open_successor(token: str, sealed: str) -> str | None:
    try:
        raw = AESGCM(_seal_key(token)).decrypt(_SEAL_NONCE, base64.b64decode(sealed), None)
    except (InvalidTag, ValueError):
        return None
    return raw.decode()


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
class RefreshInfo:
    sid: str
    user_id: str
    client_id: str
    active: bool
    expires_at: int


@dataclass(frozen=True)
class Rotation:
    """What presenting a refresh token did.

    `ok`: rotated, `refresh_token` is the successor (for a retry within the
    grace window, the same successor as before). `unknown`: no such live
    token. `reused`: a rotated token came back, the session is revoked.
    `idle`: unused past the idle timeout, the session has ended.
    `wrong_client`: issued to another client; nothing changed.
    """

    outcome: Literal["ok", "unknown", "reused", "idle", "wrong_client"]
    sid: str = ""
    user_id: str = ""
    amr: tuple[str, ...] = ()
    auth_time: int = 0
    refresh_token: str = ""
    # The scope granted to another application at sign-in; "" for the page.
    scope: str = ""


# KEYS[1] session, KEYS[2] its revocation marker (one `{sid}` slot). ARGV:
# prefix of this session's refresh records, sid, marker ttl, required owner
# ('' = any), the revocation channel. Revokes as _REVOKE does, and first
# deletes the session's refresh-token records (same slot): the family is a
# chain from the session's first token through each rotated record's `next`
# (one successor per rotation, so no forks). For account deletion only: after
# a plain logout a rotated token presented again is still a reuse signal
# worth recording. The user's session index is another slot: forget_user
# tidies it after.
_FORGET = """
local uid = redis.call('HGET', KEYS[1], 'user_id')
if not uid then return false end
if ARGV[4] ~= '' and uid ~= ARGV[4] then return false end
local h = redis.call('HGET', KEYS[1], 'first')
local n = 0
while h and n < 100000 do
  local rt = ARGV[1] .. h
  h = redis.call('HGET', rt, 'next')
  redis.call('DEL', rt)
  n = n + 1
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
redis.call('PUBLISH', ARGV[5], ARGV[2])
return n
"""


class SessionStore:
    """Redis-backed sessions.

    Args:
        session_ttl: absolute lifetime of a session, never extended by use.
        marker_ttl: life of a revocation marker; must cover an access token's.
        idle_timeout: seconds without a refresh after which the session ends
            (0: none).
        retry_grace: seconds during which a rotated token, whose successor
            was never used, gets that successor back (0: any reuse revokes).
        default_client_id: the client of records made before tokens were
            bound to one, and of requests that name none.
        durable: runs the scripts whose loss in a failover would undo a
            security decision (rotation, reuse, logout); default: no WAIT.
        clock: wall clock in seconds (tests move it).
    """

    def __init__(
        self,
        redis: RedisClient,
        *,
        prefix: str,
        session_ttl: int,
        marker_ttl: int,
        idle_timeout: int = 0,
        retry_grace: int = 0,
        default_client_id: str = "idp-web",
        durable: DurableWrites | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._r = redis
        self._p = prefix
        self._keys = SessionKeys(prefix)
        self._session_ttl = session_ttl
        self._marker_ttl = marker_ttl
        self._idle_ms = idle_timeout * 1000
        self._grace_ms = retry_grace * 1000
        self._default_client = default_client_id
        self._clock = clock
        self._rotate = register_script(redis, _ROTATE)
        self._revoke = register_script(redis, _REVOKE)
        self._forget = register_script(redis, _FORGET)
        self._durable = durable
        # Everything but a Cluster holds every key in one slot space, so one
        # transaction may span a session and its user's index.
        self._one_slot_space = not isinstance(redis, RedisCluster)

    async def _security_write(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        if self._durable is None:
            return await script(keys=keys, args=args)
        return await self._durable.run(script, keys=keys, args=args)

    def _sess(self, sid: str) -> str:
        return self._keys.session(sid)

    def _usess(self, user_id: str) -> str:
        return self._keys.user_sessions(user_id)

    def _rt(self, token: str) -> str | None:
        """The record of a presented token; None when it is no token of ours."""
        sid = tag_of(token, SID_LENGTH)
        if sid is None:
            return None
        return self._keys.refresh(sid, hash_token(token))

    def _now_ms(self) -> int:
        # Milliseconds: two logins in one second still list in the order they happened.
        return int(self._clock() * 1000)

    async def create(
        self,
        *,
        user_id: str,
        amr: tuple[str, ...],
        auth_time: int,
        ip: str,
        user_agent: str,
        client_id: str | None = None,
        scope: str = "",
    ) -> tuple[str, str]:
        """Start a session; returns (sid, refresh token).

        `client_id` and `scope`: the application the session signs in to and
        what the user granted it (refreshes keep both); the page by default.
        """
        sid = secrets.token_urlsafe(16)  # SID_LENGTH characters
        token = new_refresh_token(sid, user_id)
        token_hash = hash_token(token)
        rt = self._keys.refresh(sid, token_hash)
        now = self._now_ms()
        session: dict[FieldT, EncodableT] = {
            "user_id": user_id,
            "created_at": now,
            "last_used_at": now,
            "ip": ip,
            "user_agent": user_agent[:256],
            "amr": " ".join(amr),
            "auth_time": auth_time,
            "scope": scope,
            # The family's first token: where _FORGET starts its walk.
            "first": token_hash,
        }
        record: dict[FieldT, EncodableT] = {
            "sid": sid,
            "user_id": user_id,
            "state": "active",
            "client_id": client_id or self._default_client,
        }
        # A session is never live without being listed in the user's index
        # (its own `{user_id}` slot). One server or Sentinel: the index, the
        # session and its token in one transaction, one round trip a login.
        # A Cluster cannot take two slots in one transaction: there the index
        # goes first, and a failure after it leaves an entry that list() tidies.
        if not self._one_slot_space:
            async with self._r.pipeline(transaction=False) as index:
                index.sadd(self._usess(user_id), sid)
                index.expire(self._usess(user_id), self._session_ttl)
                await index.execute()
        async with self._r.pipeline(transaction=True) as pipe:
            if self._one_slot_space:
                pipe.sadd(self._usess(user_id), sid)
                pipe.expire(self._usess(user_id), self._session_ttl)
            pipe.hset(self._sess(sid), mapping=session)
            pipe.expire(self._sess(sid), self._session_ttl)
            pipe.hset(rt, mapping=record)
            pipe.expire(rt, self._session_ttl)
            await pipe.execute()
        return sid, token

    async def owner(self, token: str) -> tuple[str, str, str] | None:
        """(sid, user id, client id) of a refresh token in any state; None if unknown.

        A read only: refresh looks the account up before it commits the
        rotation, so a database fault cannot consume the token.
        """
        key = self._rt(token)
        if key is None:
            return None
        sid, uid, cid = await self._r.hmget(key, ["sid", "user_id", "client_id"])
        if sid is None or uid is None:
            return None
        return _s(sid), _s(uid), _s(cid) if cid is not None else self._default_client

    async def inspect(self, token: str) -> RefreshInfo | None:
        """What a refresh token stands for, for introspection (RFC 7662); a read only.

        None for a token never issued or long expired. `active` only while it
        is the family's current token and its session lives.
        """
        key = self._rt(token)
        if key is None:
            return None
        sid, uid, state, cid = await self._r.hmget(key, ["sid", "user_id", "state", "client_id"])
        if sid is None or uid is None:
            return None
        ttl_ms = int(await self._r.pttl(self._sess(_s(sid))))
        return RefreshInfo(
            sid=_s(sid),
            user_id=_s(uid),
            client_id=_s(cid) if cid is not None else self._default_client,
            active=state is not None and _s(state) == "active" and ttl_ms > 0,
            expires_at=int(self._clock() + max(ttl_ms, 0) / 1000),
        )

    async def rotate(
        self,
        token: str,
        *,
        ip: str,
        user_agent: str,
        client_id: str | None = None,
        owner: str | None = None,
    ) -> Rotation:
        """Present a refresh token: rotate it, or say why not (`Rotation`).

        `owner`: the account the caller vetted before this commit (refresh
        reads it first); a token of any other account is `unknown` and
        changes nothing. None: any owner.
        """
        sid = tag_of(token, SID_LENGTH)
        if sid is None:
            return Rotation("unknown")
        key = self._keys.refresh(sid, hash_token(token))
        new_token = new_refresh_token(sid, owner)
        new_hash = hash_token(new_token)
        res: list[Any] = await self._security_write(
            self._rotate,
            [
                key,
                self._keys.refresh(sid, new_hash),
                self._sess(sid),
                self._keys.revoked(sid),
            ],
            [
                self._keys.refresh_prefix(sid),
                self._now_ms(),
                ip,
                user_agent[:256],
                self._marker_ttl,
                self._idle_ms,
                self._grace_ms,
                client_id or self._default_client,
                self._default_client,
                seal_successor(token, new_token),
                new_hash,
                self.channel,
                sid,
                owner or "",
            ],
        )
        outcome = _s(res[0])
        if outcome == "unknown":
            return Rotation("unknown")
        if outcome == "wrong_client":
            return Rotation("wrong_client")
        if outcome == "reused":
            return Rotation("reused", sid=_s(res[1]), user_id=_s(res[2]))
        if outcome == "idle":
            return Rotation("idle", sid=_s(res[1]), user_id=_s(res[2]))
        if outcome == "retry":
            opened = open_successor(token, _s(res[5] or b""))
            if opened is None:  # cannot happen unless the record was tampered with
                return Rotation("unknown")
            new_token = opened
        return Rotation(
            "ok",
            sid=_s(res[1]),
            user_id=_s(res[2]),
            amr=tuple(_s(res[3] or b"").split()),
            auth_time=int(_s(res[4] or b"0")),
            refresh_token=new_token,
            scope=_s(res[6]) if len(res) > 6 and res[6] else "",
        )

    async def revoke(self, sid: str, *, owner: str | None = None) -> bool:
        """Revoke one session; with `owner`, only if it belongs to that user."""
        uid = await self._security_write(
            self._revoke,
            [self._sess(sid), self._keys.revoked(sid)],
            [sid, self._marker_ttl, owner or "", self.channel],
        )
        if uid is None:
            return False
        # Best effort: a stale index entry only costs list() a lookup.
        await self._r.srem(self._usess(_s(uid)), sid)
        return True

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

    async def forget_user(self, user_id: str) -> int:
        """Revoke every session of `user_id` and delete its refresh-token records.

        For account deletion: each revocation is published as `revoke_all`'s
        are, and nothing naming the account is left of its sessions. Records
        of sessions created before sessions remembered their first token
        expire with the session's lifetime instead.

        Returns:
            How many sessions were revoked.
        """
        count = 0
        index = self._usess(user_id)
        for raw in await self._r.smembers(index):
            sid = _s(raw)
            forgotten = await self._security_write(
                self._forget,
                [self._sess(sid), self._keys.revoked(sid)],
                [self._keys.refresh_prefix(sid), sid, self._marker_ttl, user_id, self.channel],
            )
            count += forgotten is not None
            await self._r.srem(index, sid)
        return count

    async def is_revoked(self, sid: str) -> bool:
        return bool(await self._r.exists(self._keys.revoked(sid)))

    async def list(self, user_id: str) -> list[SessionInfo]:
        sids = [_s(s) for s in await self._r.smembers(self._usess(user_id))]
        if not sids:
            return []
        # Not a transaction: each session is its own slot on a Cluster.
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


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
