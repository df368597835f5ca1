"""A master dies in the middle of logins, refreshes and logouts.

With `REDIS_MIN_REPLICAS_ACK=1` every answered logout, revocation and
rotation was on a replica before the answer left (WAIT), so the replica that
takes over holds it: afterwards no logged-out session and no rotated refresh
token is accepted again. Requests caught by the failover fail closed (503),
never 500, and never answer success for a write the new master lacks.

Each test starts a topology of its own (it kills a master), on a Sentinel
group (1 master, 1 replica, 3 sentinels) or a 3-master Cluster with one
replica per master. The killed master comes back empty afterwards, as a
replica, so writes can be confirmed again (with one replica per master,
nothing can be confirmed while it is away: docs/OPERATIONS.md).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Services, new_user, rejected_within_a_second, start_services
from tests.support.redis_servers import (
    RedisCluster,
    RedisServer,
    SentinelGroup,
    start_cluster,
    start_sentinel_group,
    wait_until,
)
from tests.topologies.conftest import (
    FAILOVER_CLUSTER_PORT,
    FAILOVER_SENTINEL_PORT,
    cluster_settings,
    sentinel_settings,
)

pytestmark = [pytest.mark.anyio, pytest.mark.topologies]

# Any second presentation of a rotated token is reuse (no retry grace), so
# "accepted again" has one meaning: 200.
_AUTH = {
    "redis_min_replicas_ack": 1,
    "redis_wait_timeout_ms": 500,
    "refresh_retry_grace_seconds": 0,
}


def _bearer(access: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}"}


@dataclass
class Ledger:
    """What the services promised while the master died."""

    statuses: Counter[str] = field(default_factory=Counter)
    logged_out: list[tuple[str, str]] = field(default_factory=list)  # (access, refresh)
    rotated: list[str] = field(default_factory=list)  # refresh tokens rotated away


async def _account(s: Services) -> dict[str, str]:
    body = new_user()
    assert (await s.auth.post("/users", json=body)).status_code == 201
    return body


async def _worker(s: Services, body: dict[str, str], ledger: Ledger, stop: asyncio.Event) -> None:
    """Log in, refresh twice, log out; again and again until told to stop."""
    creds = {"email": body["email"], "password": body["password"]}
    while not stop.is_set():
        try:
            r = await s.auth.post("/login", json=creds)
            ledger.statuses[f"login {r.status_code}"] += 1
            if r.status_code != 200:
                await asyncio.sleep(0.05)
                continue
            tokens = r.json()
            for _ in range(2):
                old = tokens["refresh_token"]
                r = await s.auth.post("/token/refresh", json={"refresh_token": old})
                ledger.statuses[f"refresh {r.status_code}"] += 1
                if r.status_code == 200:
                    ledger.rotated.append(old)
                    tokens = r.json()
            r = await s.auth.post("/logout", headers=_bearer(tokens["access_token"]))
            ledger.statuses[f"logout {r.status_code}"] += 1
            if r.status_code == 204:
                ledger.logged_out.append((tokens["access_token"], tokens["refresh_token"]))
        except httpx.HTTPError:
            ledger.statuses["transport error"] += 1
        await asyncio.sleep(0.01)


async def _run_through(
    s: Services, *, fail: Any, settle: Any, ledger: Ledger, workers: int = 4
) -> dict[str, float]:
    bodies = [await _account(s) for _ in range(workers)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_worker(s, b, ledger, stop)) for b in bodies]
    try:
        await asyncio.sleep(1.0)  # load before the failure
        before = dict(ledger.statuses)
        started = time.monotonic()
        await asyncio.to_thread(fail)
        await asyncio.to_thread(settle)
        settled = time.monotonic() - started
        # Load after: the new master must serve (and confirm) again.
        seen = sum(v for k, v in ledger.statuses.items() if k == "logout 204")
        deadline = time.monotonic() + 30
        while sum(v for k, v in ledger.statuses.items() if k == "logout 204") < seen + 3:
            assert time.monotonic() < deadline, f"no confirmed logout after failover: {ledger}"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert before, "no load ran before the failover"
    return {"settle_seconds": settled}


async def _nothing_comes_back(s: Services, ledger: Ledger) -> None:
    statuses = ledger.statuses
    assert not [k for k in statuses if k.endswith(" 500")], statuses
    assert ledger.logged_out, statuses
    assert ledger.rotated, statuses
    for access, refresh in ledger.logged_out:
        assert await rejected_within_a_second(s.user, "/users/me", _bearer(access)), (
            "a logged-out session is accepted again after the failover"
        )
        r = await s.auth.post("/token/refresh", json={"refresh_token": refresh})
        assert r.status_code == 401, f"a logged-out session's refresh token: {r.text}"
    for token in ledger.rotated:
        r = await s.auth.post("/token/refresh", json={"refresh_token": token})
        assert r.status_code == 401, "a rotated refresh token is accepted again"


def _replica_online(master: RedisServer) -> bool:
    """A replica is synced and acknowledging (WAIT counts only those)."""
    replica = master.client().info("replication").get("slave0")
    return isinstance(replica, dict) and replica.get("state") == "online"


def _is_master(group: SentinelGroup, server: RedisServer) -> bool:
    return group.current_master() is server


# --- Sentinel --------------------------------------------------------------------------


@pytest.fixture
def failover_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = start_sentinel_group(tmp_path / "sentinel", first_port=FAILOVER_SENTINEL_PORT)
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture
async def sentinel_services(
    tmp_path: Path, topo_prefix: str, sqlite_urls: dict[str, str], failover_group: SentinelGroup
) -> AsyncIterator[Services]:
    async for s in start_services(
        tmp_path=tmp_path,
        redis_prefix=topo_prefix,
        urls=sqlite_urls,
        redis=sentinel_settings(failover_group),
        auth=_AUTH,
    ):
        yield s


def _kill_and_replace(group: SentinelGroup) -> tuple[Any, Any]:
    old = group.current_master()

    def fail() -> None:
        old.kill()

    def settle() -> None:
        wait_until(lambda: group.current_master() is not old, timeout=30, what="a new master")
        old.restart()  # back empty; the sentinels make it a replica of the new master
        new = group.current_master()
        wait_until(lambda: _replica_online(new), timeout=30, what="the old master to rejoin")

    return fail, settle


async def test_sentinel_failover_under_load_loses_no_security_write(
    sentinel_services: Services, failover_group: SentinelGroup
) -> None:
    ledger = Ledger()
    fail, settle = _kill_and_replace(failover_group)
    figures = await _run_through(sentinel_services, fail=fail, settle=settle, ledger=ledger)
    await _nothing_comes_back(sentinel_services, ledger)
    print(f"sentinel failover: {figures}, {dict(ledger.statuses)}")


async def test_an_unconfirmed_logout_is_503_not_204(
    sentinel_services: Services, failover_group: SentinelGroup
) -> None:
    """The replica stalls: a logout cannot be confirmed, so it is refused
    (503) rather than promised; once the replica is back, it is confirmed."""
    s = sentinel_services
    body = await _account(s)
    r = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    tokens = r.json()
    replica: RedisServer = next(
        x for x in failover_group.servers if x is not failover_group.current_master()
    )
    replica.pause()
    try:
        started = time.monotonic()
        r = await s.auth.post("/logout", headers=_bearer(tokens["access_token"]))
        took = time.monotonic() - started
    finally:
        replica.resume()
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert took < 2.5  # WAIT is bounded by REDIS_WAIT_TIMEOUT_MS
    # The retry, with the replica back, is confirmed.
    r = await s.auth.post("/logout", headers=_bearer(tokens["access_token"]))
    assert r.status_code in (204, 401)


async def test_without_replica_acks_a_failover_can_undo_a_logout(
    tmp_path: Path, topo_prefix: str, sqlite_urls: dict[str, str], failover_group: SentinelGroup
) -> None:
    """Why `REDIS_MIN_REPLICAS_ACK` exists: with the default 0 and a replica
    that lags (here: stalled), a logout is answered 204, the master dies, the
    replica that never had the write is promoted, and the logged-out session
    works again. The same steps with 1 answer 503 instead (the test above)."""
    async for s in start_services(
        tmp_path=tmp_path,
        redis_prefix=topo_prefix,
        urls=sqlite_urls,
        redis=sentinel_settings(failover_group),
        auth={**_AUTH, "redis_min_replicas_ack": 0},
    ):
        body = await _account(s)
        r = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
        tokens = r.json()
        master = failover_group.current_master()
        replica = next(x for x in failover_group.servers if x is not master)
        wait_until(partial(_replica_online, master), timeout=10, what="the replica in sync")
        # Stall the replica, then cut its replication link, so it cannot
        # reconnect: the master then sends the logout nowhere. (A stall alone
        # is not enough: the kernel would buffer the stream for it.)
        replica.pause()
        master.client().client_kill_filter(_type="replica")
        try:
            assert (
                await s.auth.post("/logout", headers=_bearer(tokens["access_token"]))
            ).status_code == 204
            master.kill()
        finally:
            replica.resume()
        await asyncio.to_thread(
            wait_until,
            partial(_is_master, failover_group, replica),
            timeout=30,
            what="the stale replica to be promoted",
        )
        # The logout is gone: the session's access token is accepted again.
        again = None
        for _ in range(100):
            again = await s.user.get("/users/me", headers=_bearer(tokens["access_token"]))
            if again.status_code != 503:
                break
            await asyncio.sleep(0.1)
        assert again is not None
        assert again.status_code == 200


# --- Cluster ---------------------------------------------------------------------------


@pytest.fixture
def failover_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    cluster = start_cluster(tmp_path / "cluster", first_port=FAILOVER_CLUSTER_PORT)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def cluster_services(
    tmp_path: Path, topo_prefix: str, sqlite_urls: dict[str, str], failover_cluster: RedisCluster
) -> AsyncIterator[Services]:
    async for s in start_services(
        tmp_path=tmp_path,
        redis_prefix=topo_prefix,
        urls=sqlite_urls,
        redis=cluster_settings(failover_cluster),
        auth=_AUTH,
    ):
        yield s


async def test_cluster_failover_under_load_loses_no_security_write(
    cluster_services: Services, failover_cluster: RedisCluster
) -> None:
    ledger = Ledger()
    # The master of the first node's slots; with sessions spread over all
    # slots, about a third of the work lands on it.
    victim = failover_cluster.primary_of("{a}")
    replica = failover_cluster.replica_of(victim)

    def promoted() -> bool:
        info = replica.client().info("replication")
        return bool(info["role"] == "master")

    def fail() -> None:
        victim.kill()

    def settle() -> None:
        wait_until(promoted, timeout=30, what="the replica to take over")
        victim.restart()  # rejoins (nodes.conf) and becomes the new master's replica
        wait_until(lambda: _replica_online(replica), timeout=30, what="the old master to rejoin")

    figures = await _run_through(cluster_services, fail=fail, settle=settle, ledger=ledger)
    await _nothing_comes_back(cluster_services, ledger)
    print(f"cluster failover: {figures}, {dict(ledger.statuses)}")
