"""Which Redis a service talks to: one server, a Sentinel group, or a Cluster.

The one factory both services, their revocation feed and the admin CLI use
(docs/OPERATIONS.md, "Redis topologies"). Exactly one of three settings names
the Redis, and anything else is refused at start:

- `REDIS_URL`: one server (`redis://`, `rediss://` with TLS options in the
  query, e.g. `?ssl_ca_certs=/ca.pem`, `unix://`); the default when none is set.
- `REDIS_SENTINELS=host:port,...` + `REDIS_SENTINEL_MASTER=name`: the master
  Sentinel names, found again after a failover (redis-py's Sentinel pool).
- `REDIS_CLUSTER_NODES=host:port,...`: Redis Cluster (redis-py's RedisCluster,
  which follows MOVED and re-reads the slot map after a failover).

On a Cluster every multi-key script and transaction must keep to one hash
slot; the key scheme gives each such group one hash tag
(`auth_service/stores/keys.py`), and `register_script` makes the server check
it (below).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.commands.core import AsyncScript

__all__ = [
    "DEFAULT_REDIS_URL",
    "RedisClient",
    "RedisTopology",
    "close_client",
    "parse_addresses",
    "register_script",
]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# What the stores hold: either client answers the same commands; only the
# routing differs (a Cluster client routes each command by its key's slot).
RedisClient: TypeAlias = Redis | RedisCluster

# Bounded timeouts: a Redis that stops answering surfaces as an error (503,
# shared/http/unavailable.py) within seconds instead of hanging requests.
_TIMEOUTS: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}


def parse_addresses(value: str, *, setting: str) -> list[tuple[str, int]]:
    """`host:port,host:port` (IPv6 as `[::1]:6379`) as (host, port) pairs.

    Raises:
        ValueError: an entry without a port, or a port outside 1..65535.
    """
    out: list[tuple[str, int]] = []
    for raw in filter(None, (p.strip() for p in value.split(","))):
        host, sep, port = raw.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{setting}: expected host:port, got {raw!r}")
        out.append((host, int(port)))
    return out


@dataclass(frozen=True)
class RedisTopology:
    """The Redis a service was configured with (validated by the settings).

    `kind` says which of the three settings named it; `node_kwargs` are the
    connection options of the data nodes (password, TLS) for Sentinel and
    Cluster, where no URL carries them.
    """

    kind: Literal["url", "sentinel", "cluster"]
    url: str = DEFAULT_REDIS_URL
    addresses: tuple[tuple[str, int], ...] = ()
    master_name: str = ""
    username: str = ""
    password: str = ""
    sentinel_password: str = ""
    tls: bool = False
    tls_ca_file: str = ""
    tls_check_hostname: bool = True

    def _node_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.username:
            kwargs["username"] = self.username
        if self.password:
            kwargs["password"] = self.password
        if self.tls:
            kwargs["ssl"] = True
            kwargs["ssl_check_hostname"] = self.tls_check_hostname
            if self.tls_ca_file:
                kwargs["ssl_ca_certs"] = self.tls_ca_file
        return kwargs

    def _sentinel(self, **extra: Any) -> Sentinel:
        sentinel_kwargs: dict[str, Any] = dict(_TIMEOUTS)
        if self.sentinel_password:
            sentinel_kwargs["password"] = self.sentinel_password
        if self.tls:
            sentinel_kwargs |= {k: v for k, v in self._node_kwargs().items() if k.startswith("ssl")}
        return Sentinel(  # type: ignore[no-untyped-call]
            list(self.addresses),
            sentinel_kwargs=sentinel_kwargs,
            **_TIMEOUTS,
            **self._node_kwargs(),
            **extra,
        )

    def client(self) -> RedisClient:
        """The service's pool (a client that finds the master or the slot's node).

        The periodic health check replaces connections a failover left dead.
        """
        if self.kind == "url":
            return Redis.from_url(self.url, **_TIMEOUTS, health_check_interval=30)
        if self.kind == "sentinel":
            master: Redis = self._sentinel(health_check_interval=30).master_for(self.master_name)
            return master
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self.addresses],
            **_TIMEOUTS,
            **self._node_kwargs(),
        )

    def subscriber_factory(self) -> Callable[..., Redis]:
        """Makes fresh plain clients (given extra connection options) for a
        pub/sub subscription: the revocation feed.

        Plain PUBLISH reaches every node: a replica receives what its master
        publishes, and a Cluster broadcasts it over its bus to all nodes. So
        one connection to any node of the deployment hears every revocation.
        Sentinel: the master (asked again at each call). Cluster: the
        configured nodes in turn, so a dead node is skipped at the next
        reconnection.
        """
        if self.kind == "url":
            url = self.url

            def from_url(**options: Any) -> Redis:
                return Redis.from_url(url, **_TIMEOUTS, **options)

            return from_url
        if self.kind == "sentinel":
            name = self.master_name

            def master(**options: Any) -> Redis:
                # A Sentinel of its own per client, so that `close_client`
                # closes the sentinel connections with it: a shared one kept
                # them open past every reconnection and the service's end.
                client: Redis = self._sentinel().master_for(name, **options)
                return client

            return master
        nodes = itertools.cycle(self.addresses)
        kwargs = self._node_kwargs()

        def next_node(**options: Any) -> Redis:
            host, port = next(nodes)
            return Redis(host=host, port=port, **_TIMEOUTS, **kwargs, **options)

        return next_node

    def node_client(self, host: str, port: int) -> Redis:
        """A plain client to one Cluster node (for WAIT: shared/runtime/redis_durable.py)."""
        return Redis(host=host, port=port, **_TIMEOUTS, **self._node_kwargs())

    def describe(self) -> str:
        """Where it points, without a credential (for logs)."""
        if self.kind == "url":
            parts = urlsplit(self.url)
            port = f":{parts.port}" if parts.port else ""
            return f"{parts.scheme}://{parts.hostname or ''}{port}"
        where = ",".join(f"{h}:{p}" for h, p in self.addresses)
        if self.kind == "sentinel":
            return f"sentinel {self.master_name}@{where}"
        return f"cluster {where}"


async def close_client(client: RedisClient) -> None:
    """Close a client of `RedisTopology.client()` or of a `subscriber_factory()`,
    with what it holds open.

    A Sentinel master client keeps the sentinels' own clients (where it asks
    for the master) outside its pool: closing the pool alone left their
    sockets open until the garbage collector found them.
    """
    await client.aclose()
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()


def register_script(client: RedisClient, body: str) -> AsyncScript:
    """A Lua script on `client`; on a Cluster, with Redis 7's `#!lua` shebang.

    With the shebang, a Cluster node refuses a script that touches any key
    outside the slot of its declared keys (undeclared keys too), so a key
    scheme mistake fails loudly instead of working until the next resharding.
    One server and Sentinel have no slots, and the embedded development
    server (fakeredis) does not parse shebangs, so they get the body as is.
    """
    if isinstance(client, RedisCluster):
        body = "#!lua\n" + body
    return client.register_script(body)
