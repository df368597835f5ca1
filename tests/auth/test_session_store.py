"""Starting a session on one Redis server: one round trip, one transaction.

Every login ends in `SessionStore.create`. On one server (or a Sentinel
group) the user's session index, the session and its first refresh token are
written in one MULTI/EXEC: one round trip, and never a session that its
user's index does not list (bench/README.md, P5). A Cluster takes two
(tests/topologies/test_cluster_keys.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
import redis.asyncio as aioredis

from auth_service.stores.sessions import SessionStore
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.anyio


class CountingConnection(aioredis.Connection):
    """The real connection, keeping what it sends: one send is one round trip."""

    sent: list[list[str]]

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        chunks = [command] if isinstance(command, bytes | str) else list(command)
        raw = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks)
        # The command names of a RESP array of bulk strings, in order.
        words = raw.split(b"\r\n")
        names = [words[i + 2].decode() for i, w in enumerate(words) if w.startswith(b"*")]
        type(self).sent.append(names)
        await super().send_packed_command(chunks, check_health)


@pytest.fixture
async def counted() -> AsyncIterator[tuple[aioredis.Redis, list[list[str]]]]:
    sent: list[list[str]] = []
    connection = type("Counting", (CountingConnection,), {"sent": sent})
    pool = aioredis.ConnectionPool.from_url(REDIS_URL, connection_class=connection)
    client = aioredis.Redis(connection_pool=pool)
    await client.ping()  # the connection's own start-up is not the store's
    sent.clear()
    yield client, sent
    await client.aclose()
    await pool.aclose()


async def test_a_session_starts_in_one_round_trip_and_one_transaction(
    counted: tuple[aioredis.Redis, list[list[str]]], redis_prefix: str
) -> None:
    client, sent = counted
    store = SessionStore(client, prefix=redis_prefix, session_ttl=600, marker_ttl=120)
    sid, token = await store.create(
        user_id="u1", amr=("pwd",), auth_time=1, ip="127.0.0.1", user_agent="t"
    )
    assert len(sent) == 1
    names = [name.upper() for name in sent[0]]
    assert names[0] == "MULTI"
    assert names[-1] == "EXEC"
    assert sorted(names[1:-1]) == ["EXPIRE", "EXPIRE", "EXPIRE", "HSET", "HSET", "SADD"]

    # What it wrote is a whole session: listed for its user, its token live.
    [listed] = await store.list("u1")
    assert listed.sid == sid
    assert listed.amr == ("pwd",)
    assert await store.owner(token) == (sid, "u1", "idp-web")
    for key in (f"{redis_prefix}usess:{{u1}}", f"{redis_prefix}sess:{{{sid}}}"):
        assert 0 < await client.ttl(key) <= 600
    rotation = await store.rotate(token, ip="127.0.0.1", user_agent="t")
    assert rotation.outcome == "ok"
    assert rotation.sid == sid


async def test_sessions_of_one_user_are_all_listed(
    counted: tuple[aioredis.Redis, list[list[str]]], redis_prefix: str
) -> None:
    client, _ = counted
    store = SessionStore(client, prefix=redis_prefix, session_ttl=600, marker_ttl=120)
    started: set[Any] = set()
    for _ in range(3):
        sid, _token = await store.create(
            user_id="u2", amr=("pwd",), auth_time=1, ip="127.0.0.1", user_agent="t"
        )
        started.add(sid)
    assert {s.sid for s in await store.list("u2")} == started
    assert await store.revoke(next(iter(started)))
    assert len(await store.list("u2")) == 2
