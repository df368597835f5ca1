"""Every store's scripts and transactions on a real 3-master Cluster.

A script touching keys of two slots fails on a Cluster (CROSSSLOT from
redis-py for declared keys; for undeclared ones, Redis 7 refuses scripts
registered with the `#!lua` shebang, which `register_script` adds on a
Cluster). So each path below, run here, proves its keys share one hash tag
(auth_service/stores/keys.py). The first test shows the check can fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster as ClusterClient
from redis.exceptions import RedisClusterException, ResponseError

from auth_service.stores.authorization import AuthorizationStore
from auth_service.stores.challenges import Ceremony, ChallengeStore
from auth_service.stores.one_time_tokens import OneTimeTokens
from auth_service.stores.rate_limit import Limit, RateLimiter
from auth_service.stores.sessions import SessionStore
from shared.access.revocation import RedisRevocationChecker
from shared.runtime.redis_durable import DurableWrites
from shared.runtime.redis_topology import RedisTopology, register_script
from shared.runtime.settings import CommonSettings
from tests.support.redis_servers import RedisCluster

pytestmark = [pytest.mark.anyio, pytest.mark.topologies]


@pytest.fixture
async def cluster_client(redis_cluster: RedisCluster) -> AsyncIterator[ClusterClient]:
    topology = CommonSettings(
        redis_url="", redis_cluster_nodes=redis_cluster.nodes_setting
    ).redis_topology
    client = topology.client()
    assert isinstance(client, ClusterClient)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def durable(
    redis_cluster: RedisCluster, cluster_client: ClusterClient
) -> AsyncIterator[DurableWrites]:
    topology = RedisTopology("cluster", addresses=(("127.0.0.1", redis_cluster.nodes[0].port),))
    writes = DurableWrites(cluster_client, topology, replicas=1, timeout_ms=2000)
    try:
        yield writes
    finally:
        await writes.aclose()


async def test_a_script_that_strays_from_its_slot_fails(cluster_client: ClusterClient) -> None:
    """The control: without it, the tests below could not fail."""
    stray = register_script(
        cluster_client, "redis.call('SET', KEYS[1], '1'); return redis.call('GET', ARGV[1])"
    )
    with pytest.raises(ResponseError, match=r"same slot|non local key"):
        await stray(keys=["k:{a}"], args=["k:{b}"])
    declared = register_script(cluster_client, "return 1")
    with pytest.raises(RedisClusterException):
        await declared(keys=["k:{a}", "k:{b}"], args=[])


async def test_sessions_every_path(
    cluster_client: ClusterClient, durable: DurableWrites, topo_prefix: str
) -> None:
    store = SessionStore(
        cluster_client,
        prefix=topo_prefix,
        session_ttl=600,
        marker_ttl=120,
        idle_timeout=300,
        retry_grace=30,
        durable=durable,
    )
    sid, token = await store.create(
        user_id="u1", amr=("pwd",), auth_time=1, ip="127.0.0.1", user_agent="t"
    )
    assert await store.owner(token) == (sid, "u1", "idp-web")
    first = await store.rotate(token, ip="127.0.0.1", user_agent="t")
    assert first.outcome == "ok"
    # The retry of a lost answer (reads the successor's record in the script).
    retry = await store.rotate(token, ip="127.0.0.1", user_agent="t")
    assert (retry.outcome, retry.refresh_token) == ("ok", first.refresh_token)
    second = await store.rotate(first.refresh_token, ip="127.0.0.1", user_agent="t")
    assert second.outcome == "ok"
    assert (await store.rotate(token, ip="127.0.0.1", user_agent="t")).outcome == "reused"
    assert await store.is_revoked(sid)
    assert await RedisRevocationChecker(cluster_client, prefix=topo_prefix).is_revoked(sid)
    assert (await store.rotate("garbage", ip="", user_agent="")).outcome == "unknown"
    assert (await store.rotate("x" * 70, ip="", user_agent="")).outcome == "unknown"
    # Several sessions of one user, in several slots: list and revoke them all.
    for _ in range(4):
        await store.create(user_id="u2", amr=("pwd",), auth_time=1, ip="", user_agent="")
    listed = await store.list("u2")
    assert len(listed) == 4
    assert await store.revoke(listed[0].sid, owner="someone-else") is False
    assert await store.revoke(listed[0].sid, owner="u2") is True
    assert await store.revoke_all("u2", keep=listed[1].sid) == 2
    assert [s.sid for s in await store.list("u2")] == [listed[1].sid]
    # Account deletion: each session's refresh chain walked and deleted in its slot.
    sid3, token3 = await store.create(user_id="u3", amr=("pwd",), auth_time=1, ip="", user_agent="")
    rotated = await store.rotate(token3, ip="", user_agent="")
    assert rotated.outcome == "ok"
    assert await store.forget_user("u3") == 1
    assert await store.is_revoked(sid3)
    assert await store.list("u3") == []
    assert (await store.rotate(rotated.refresh_token, ip="", user_agent="")).outcome == "unknown"


async def test_another_applications_session_on_a_cluster(
    cluster_client: ClusterClient, durable: DurableWrites, topo_prefix: str
) -> None:
    """The scope a session keeps for its application, and introspection's read."""
    store = SessionStore(
        cluster_client,
        prefix=topo_prefix,
        session_ttl=600,
        marker_ttl=120,
        retry_grace=30,
        durable=durable,
    )
    sid, token = await store.create(
        user_id="u4",
        amr=("pwd",),
        auth_time=1,
        ip="",
        user_agent="",
        client_id="app-1",
        scope="openid email",
    )
    info = await store.inspect(token)
    assert info is not None
    assert (info.sid, info.user_id, info.client_id, info.active) == (sid, "u4", "app-1", True)
    rotated = await store.rotate(token, ip="", user_agent="", client_id="app-1")
    assert (rotated.outcome, rotated.scope) == ("ok", "openid email")
    retry = await store.rotate(token, ip="", user_agent="", client_id="app-1")
    assert (retry.refresh_token, retry.scope) == (rotated.refresh_token, "openid email")
    spent = await store.inspect(token)
    assert spent is not None
    assert spent.active is False
    assert await store.inspect("not a token") is None


async def test_authorization_requests_and_codes_every_path(
    cluster_client: ClusterClient, durable: DurableWrites, topo_prefix: str
) -> None:
    store = AuthorizationStore(
        cluster_client,
        prefix=topo_prefix,
        request_ttl=60,
        code_ttl=60,
        replay_ttl=600,
        durable=durable,
    )
    request_id = await store.save_request({"client_id": "app-1", "scope": "openid"})
    assert await store.peek_request(request_id) == {"client_id": "app-1", "scope": "openid"}
    assert await store.take_request(request_id) == {"client_id": "app-1", "scope": "openid"}
    assert await store.take_request(request_id) is None  # answered once
    code = await store.issue_code({"user_id": "u5", "client_id": "app-1"})
    redeemed = await store.redeem(code)
    assert (redeemed.outcome, redeemed.record) == ("ok", {"user_id": "u5", "client_id": "app-1"})
    assert await store.bind_session(code, "sid-1") is True
    replay = await store.redeem(code)
    assert (replay.outcome, replay.sid, replay.user_id) == ("reused", "sid-1", "u5")
    # A replay between redemption and binding: the binder learns of it.
    other = await store.issue_code({"user_id": "u6"})
    assert (await store.redeem(other)).outcome == "ok"
    assert (await store.redeem(other)).outcome == "reused"
    assert await store.bind_session(other, "sid-2") is False
    assert (await store.redeem("never-issued")).outcome == "unknown"


async def test_one_time_tokens_every_path(
    cluster_client: ClusterClient, durable: DurableWrites, topo_prefix: str
) -> None:
    tokens = OneTimeTokens(
        cluster_client, prefix=topo_prefix, purpose="reset", ttl_seconds=60, durable=durable
    )
    first = await tokens.issue("user-1")
    second = await tokens.issue("user-1")  # retires the first (same slot)
    assert await tokens.peek(first) is None
    assert await tokens.peek(second) == "user-1"
    assert await tokens.consume(second) == "user-1"
    assert await tokens.consume(second) is None
    third = await tokens.issue("user-1")
    assert await tokens.retire("user-1") is True
    assert await tokens.consume(third) is None
    assert await tokens.consume("not-a-token!") is None


async def test_challenges_and_rate_limits(cluster_client: ClusterClient, topo_prefix: str) -> None:
    challenges = ChallengeStore(cluster_client, prefix=topo_prefix, challenge_ttl=60, mfa_ttl=60)
    challenge = await challenges.begin(Ceremony.LOGIN, user_id=None)
    assert (await challenges.take(Ceremony.LOGIN, challenge)) is not None
    token, _ = await challenges.begin_mfa(user_id="u")
    assert (await challenges.take_mfa(token)) is not None
    limiter = RateLimiter(cluster_client, prefix=topo_prefix, enabled=True)
    limit = Limit("login-ip", 2, 60)
    decisions: list[Any] = [await limiter.hit(limit, "1.2.3.4") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    await limiter.reset(limit, "1.2.3.4")
    assert (await limiter.hit(limit, "1.2.3.4")).allowed
    # A login's limits (an IP, an account: two slots) in order, stopping at
    # the first refusal, and their reset.
    per_ip, per_account = Limit("login-ip", 5, 60), Limit("login-account", 1, 60)
    attempt = [(per_ip, "5.6.7.8"), (per_account, "someone@example.com")]
    assert await limiter.hit_each(attempt) is None
    refused = await limiter.hit_each(attempt)
    assert refused is not None
    assert refused[0] == per_account
    assert not refused[1].allowed
    await limiter.reset_each(attempt)
    assert await limiter.hit_each(attempt) is None
