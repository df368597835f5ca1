"""Fixed-window rate limits in Redis.

The counter is incremented *before* the guarded work runs (one atomic
INCR+PEXPIRE script), so N parallel attempts can never get more than `limit`
through: a check-then-increment would let a burst slip past the check.

An attempt guarded by several limits (a login counts per IP, per account and
network, per account) takes them in one script, one round trip: in order,
stopping at the first that refuses, exactly as one `hit` after another did.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio.cluster import RedisCluster

from shared.runtime.redis_topology import RedisClient, register_script

_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""

# KEYS: one counter per limit, in order. ARGV: (limit, window ms) per key.
# Counts each in turn and stops at the first full window, so a refused
# attempt is not counted against the limits after it (as one `hit` after
# another: per-IP refusals never eat an account's budget).
_HIT_EACH = """
for i, key in ipairs(KEYS) do
  local limit, window = tonumber(ARGV[2 * i - 1]), ARGV[2 * i]
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('PEXPIRE', key, window) end
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then redis.call('PEXPIRE', key, window); ttl = tonumber(window) end
  if n > limit then return {i, ttl} end
end
return {0, 0}
"""


def client_network(ip: str, *, ipv4_prefix: int = 32, ipv6_prefix: int = 64) -> str:
    """The network an address belongs to, for per-(account, network) limits.

    IPv6 is grouped by /64 by default: one subscriber or host usually holds a
    whole /64 and can rotate through it at will, so counting single IPv6
    addresses would give one attacker 2^64 budgets. IPv4 stays per address:
    NAT already makes an address a crowd, and grouping more would throttle
    bystanders on the same ISP pool. Anything unparsable is its own group.
    """
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        # ::ffff:a.b.c.d is an IPv4 client on a dual-stack socket: one /64
        # would put every IPv4 client in the same group.
        addr = addr.ipv4_mapped
    prefix = ipv4_prefix if addr.version == 4 else ipv6_prefix
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


@dataclass(frozen=True)
class Limit:
    scope: str
    limit: int
    window_seconds: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: int


class RateLimiter:
    def __init__(self, redis: RedisClient, *, prefix: str, enabled: bool) -> None:
        self._r = redis
        self._p = prefix
        self._enabled = enabled
        self._hit = register_script(redis, _HIT)
        # An attempt's counters live in as many slots as they have subjects
        # (an IP, an account): on a Cluster one script cannot hold them all
        # (docs/CONTRACTS.md, "Redis keys"), so there they are counted one
        # `hit` after another, same order, same stop at the first refusal.
        self._one_script = not isinstance(redis, RedisCluster)
        self._hit_each = register_script(redis, _HIT_EACH) if self._one_script else None

    def _key(self, limit: Limit, subject: str) -> str:
        return f"{self._p}rl:{limit.scope}:{subject}"

    async def hit(self, limit: Limit, subject: str) -> Decision:
        """Count one attempt; refuse it when the window is already full."""
        if not self._enabled:
            return Decision(True, 0)
        n, ttl_ms = await self._hit(
            keys=[self._key(limit, subject)], args=[limit.window_seconds * 1000]
        )
        if int(n) <= limit.limit:
            return Decision(True, 0)
        return Decision(False, max(1, math.ceil(int(ttl_ms) / 1000)))

    async def hit_each(self, pairs: Sequence[tuple[Limit, str]]) -> tuple[Limit, Decision] | None:
        """Count one attempt against each (limit, subject), in order, in one round trip.

        Returns:
            None when every limit let the attempt through; otherwise the first
            limit that refused it and its decision (the limits after it were
            not counted).
        """
        if not self._enabled or not pairs:
            return None
        if self._hit_each is None:
            for limit, subject in pairs:
                decision = await self.hit(limit, subject)
                if not decision.allowed:
                    return limit, decision
            return None
        args: list[int] = []
        for limit, _ in pairs:
            args += [limit.limit, limit.window_seconds * 1000]
        index, ttl_ms = await self._hit_each(
            keys=[self._key(limit, subject) for limit, subject in pairs], args=args
        )
        if int(index) == 0:
            return None
        return pairs[int(index) - 1][0], Decision(False, max(1, math.ceil(int(ttl_ms) / 1000)))

    async def reset(self, limit: Limit, subject: str) -> None:
        if self._enabled:
            await self._r.delete(self._key(limit, subject))

    async def reset_each(self, pairs: Sequence[tuple[Limit, str]]) -> None:
        """Forget several counters in one round trip (one DEL)."""
        if self._enabled and pairs:
            await self._r.delete(*(self._key(limit, subject) for limit, subject in pairs))
