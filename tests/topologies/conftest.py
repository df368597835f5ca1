"""Real Redis topologies for this folder: a 3-master Cluster (one replica each)
and a Sentinel group (1 master, 1 replica, 3 sentinels), on ports 24000-24999.

The shared ones live for the whole run (tests use key prefixes of their own);
failover tests start groups of their own, since they kill a master. Every
process is stopped at teardown (tests/support/redis_servers.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Services, start_services
from tests.support.redis_servers import (
    RedisCluster,
    SentinelGroup,
    start_cluster,
    start_sentinel_group,
)

# Under `make test` (pytest-xdist, a file per worker) two topology files may
# run at once: each worker takes its own 50 ports of each range.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_OFFSET = 50 * _WORKER
CLUSTER_PORT = 24100 + _OFFSET  # ..+5, cluster bus +500
SENTINEL_PORT = 24200 + _OFFSET  # ..+4
FAILOVER_SENTINEL_PORT = 24300 + _OFFSET  # ..+4, one group per test
FAILOVER_CLUSTER_PORT = 24400 + _OFFSET  # ..+5, cluster bus +500


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("cluster"), first_port=CLUSTER_PORT)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def sentinel_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    group = start_sentinel_group(tmp_path_factory.mktemp("sentinel"), first_port=SENTINEL_PORT)
    try:
        yield group
    finally:
        group.stop()


def cluster_settings(cluster: RedisCluster, **extra: Any) -> dict[str, Any]:
    return {"redis_url": "", "redis_cluster_nodes": cluster.nodes_setting, **extra}


def sentinel_settings(group: SentinelGroup, **extra: Any) -> dict[str, Any]:
    return {
        "redis_url": "",
        "redis_sentinels": group.sentinels_setting,
        "redis_sentinel_master": group.master_name,
        **extra,
    }


@pytest.fixture(params=["cluster", "sentinel"])
def topology_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Redis settings of both services, once per topology."""
    if request.param == "cluster":
        return cluster_settings(request.getfixturevalue("redis_cluster"))
    return sentinel_settings(request.getfixturevalue("sentinel_group"))


@pytest.fixture
def topo_prefix() -> str:
    # The shared topologies outlive each test: keys of a test of its own.
    return f"test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def topo_services(
    tmp_path: Path,
    topo_prefix: str,
    sqlite_urls: dict[str, str],
    topology_settings: dict[str, Any],
) -> AsyncIterator[Services]:
    async for s in start_services(
        tmp_path=tmp_path,
        redis_prefix=topo_prefix,
        urls=sqlite_urls,
        redis=topology_settings,
        auth={"redis_min_replicas_ack": 1},
    ):
        yield s
