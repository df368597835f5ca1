"""Security writes that survive a failover: the write, then WAIT on its connection.

Redis replicates asynchronously: a master that acknowledged a logout and then
died before its replica had the write hands the promoted replica a world in
which the session was never revoked, the rotated refresh token is active
again, and the reuse mark is gone. `WAIT n timeout` blocks until `n` replicas
hold every earlier write *of the same connection*, so the script and the
WAIT go down one connection, in one pipeline (one round trip):

- one server and Sentinel: a pipeline on the service's own client;
- Cluster: a pipeline on a plain client to the node that serves the keys'
  slot (a Cluster client would send a keyless WAIT to other connections).
  A MOVED/ASK answer or a lost connection (the slot moved, the node died)
  refreshes the slot map through the Cluster client and tries once more.
  The retried scripts are safe to run twice: a revocation of a revoked
  session changes nothing, and a rotation that already ran gives back the
  same successor (the retry grace, auth_service/stores/sessions.py).

Fewer acknowledgements than asked within the timeout and the write stands
on the master, but the caller gets `ReplicationUnconfirmed`, a RedisError,
which both services answer with 503 (fail closed: the client retries, and
the retry is confirmed or refused again). With `REDIS_MIN_REPLICAS_ACK=0`
(the default, right for one server) nothing waits. The guarantee and its
cost: docs/OPERATIONS.md, "Redis topologies".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.runtime.redis_topology import RedisClient, RedisTopology

__all__ = ["DurableWrites", "ReplicationUnconfirmed"]

_MOVED = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN")


class ReplicationUnconfirmed(RedisError):
    """A security write reached the master but not enough replicas in time."""


class DurableWrites:
    """Runs scripts whose loss in a failover would undo a security decision.

    Args:
        client: the service's Redis client.
        topology: where it points (Cluster: to reach a slot's node directly).
        replicas: replicas that must hold the write (`REDIS_MIN_REPLICAS_ACK`).
        timeout_ms: how long to wait for them (`REDIS_WAIT_TIMEOUT_MS`).
    """

    def __init__(
        self, client: RedisClient, topology: RedisTopology, *, replicas: int, timeout_ms: int
    ) -> None:
        self._client = client
        self._topology = topology
        self.replicas = replicas
        self._timeout_ms = timeout_ms
        self._nodes: dict[tuple[str, int], Redis] = {}

    async def run(self, script: AsyncScript, *, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run `script`, then (when replicas are required) WAIT for them.

        Raises:
            ReplicationUnconfirmed: fewer than `replicas` acknowledged in time.
            RedisError, OSError: Redis is unreachable (callers answer 503).
        """
        if self.replicas == 0:
            return await script(keys=list(keys), args=list(args))
        if not isinstance(self._client, RedisCluster):
            return await self._run_on(self._client, script, keys, args)
        try:
            return await self._run_on(self._node_for(keys[0]), script, keys, args)
        except (RedisConnectionError, RedisTimeoutError, ResponseError) as exc:
            if isinstance(exc, ResponseError) and not str(exc).startswith(_MOVED):
                raise
            # The slot moved or its node is gone: a keyed read through the
            # Cluster client follows the redirection and refreshes its map.
            await self._client.exists(keys[0])
            return await self._run_on(self._node_for(keys[0]), script, keys, args)

    def _node_for(self, key: str) -> Redis:
        assert isinstance(self._client, RedisCluster)
        node = self._client.get_node_from_key(key)
        if node is None:
            raise RedisConnectionError("no node serves this key's slot")
        address = (node.host, int(node.port))
        client = self._nodes.get(address)
        if client is None:
            client = self._nodes[address] = self._topology.node_client(*address)
        return client

    async def _run_on(
        self, client: Redis, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        async with client.pipeline(transaction=False) as pipe:
            await script(keys=list(keys), args=list(args), client=pipe)
            pipe.wait(self.replicas, self._timeout_ms)
            result, acked = await pipe.execute()
        if int(acked) < self.replicas:
            raise ReplicationUnconfirmed(
                f"expected {self.replicas} replica acknowledgements within "
                f"{self._timeout_ms} ms, got {int(acked)}"
            )
        return result

    async def aclose(self) -> None:
        for client in self._nodes.values():
            await client.aclose()
        self._nodes.clear()
