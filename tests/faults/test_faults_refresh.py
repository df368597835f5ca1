"""A fault during refresh must not log the user out.

Real service processes; the auth service reaches its own redis-server and
its own PostgreSQL database through proxies this module controls. A
refresh that answers 5xx must leave the client a way back: its retry
succeeds, no `refresh.reuse_detected` is raised, the session lives on.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import PG_ADMIN_URL, new_user
from tests.e2e.processes import Pair
from tests.faults.servers import OwnRedis, StallingProxy, register_and_login, start_processes
from tests.faults.test_faults_dependencies import BOUND, TIMEOUT, _psql

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


@dataclass
class Wired:
    pair: Pair
    redis_proxy: StallingProxy  # auth service -> its Redis
    db_proxy: StallingProxy  # auth service -> its PostgreSQL

    @property
    def auth(self) -> str:
        return self.pair.auth.url

    def audit(self, event: str, user_id: str) -> list[dict[str, Any]]:
        records = (
            json.loads(line)
            for line in self.pair.auth.log_path.read_text().splitlines()
            if line.startswith("{")
        )
        return [r for r in records if r.get("event") == event and r.get("user_id") == user_id]


@pytest.fixture(scope="module")
def wired(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wired]:
    tmp = tmp_path_factory.mktemp("refresh-faults")
    own_redis = OwnRedis(tmp / "redis")
    own_redis.start()
    db = f"idp_refresh_fault_{uuid.uuid4().hex[:8]}"
    server = PG_ADMIN_URL.rsplit("/", 1)[0]
    pg_host, pg_port = server.rsplit("@", 1)[1].split(":")
    _psql(PG_ADMIN_URL, f"CREATE DATABASE {db}")
    try:
        with (
            StallingProxy("127.0.0.1", own_redis.port) as redis_proxy,
            StallingProxy(pg_host, int(pg_port)) as db_proxy,
        ):
            pair = Pair(tmp, own_redis.url, "idp:")
            pair.auth.env["REDIS_URL"] = f"redis://127.0.0.1:{redis_proxy.port}/0"
            pair.auth.env["DATABASE_URL"] = (
                f"postgresql+asyncpg://postgres@127.0.0.1:{db_proxy.port}/{db}"
            )
            start_processes(pair.auth, pair.user)
            try:
                yield Wired(pair, redis_proxy, db_proxy)
            finally:
                pair.stop()
    finally:
        own_redis.stop()
        _psql(PG_ADMIN_URL, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def _refresh(auth: str, token: str) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    r = httpx.post(f"{auth}/token/refresh", json={"refresh_token": token}, timeout=TIMEOUT)
    return r, time.monotonic() - t0


def _assert_alive(w: Wired, uid: str, tokens: dict[str, Any]) -> None:
    """The session works end to end: its access token, and its refresh token once more."""
    me = httpx.get(
        f"{w.pair.user.url}/users/me",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=TIMEOUT,
    )
    assert me.status_code == 200, me.text
    again, _ = _refresh(w.auth, tokens["refresh_token"])
    assert again.status_code == 200, again.text
    assert w.audit("refresh.reuse_detected", uid) == []


def test_database_down_during_refresh_then_the_retry_succeeds(wired: Wired) -> None:
    uid, tokens = register_and_login(wired.auth, new_user())
    wired.db_proxy.stall()  # the auth service's database stops answering
    try:
        failed, elapsed = _refresh(wired.auth, tokens["refresh_token"])
    finally:
        wired.db_proxy.resume()
    assert failed.status_code == 503, failed.text
    assert int(failed.headers["retry-after"]) >= 1
    assert elapsed < BOUND
    # The client does what the 503 told it: retry with the same token.
    retry, _ = _refresh(wired.auth, tokens["refresh_token"])
    assert retry.status_code == 200, retry.text
    _assert_alive(wired, uid, retry.json())


def test_redis_reply_timeout_mid_rotation_then_the_retry_succeeds(wired: Wired) -> None:
    uid, tokens = register_and_login(wired.auth, new_user())
    # One refresh first, so that the rotation script is loaded and every
    # later rotation is one EVALSHA.
    warm, _ = _refresh(wired.auth, tokens["refresh_token"])
    assert warm.status_code == 200, warm.text
    tokens = warm.json()
    # Redis runs every rotation it receives but no answer comes back: the
    # client library times out (and retries, and times out) without knowing
    # whether the token was rotated. It was.
    wired.redis_proxy.hold_replies_after(b"EVALSHA")
    try:
        failed, elapsed = _refresh(wired.auth, tokens["refresh_token"])
    finally:
        wired.redis_proxy.resume()
    assert failed.status_code == 503, failed.text
    assert elapsed < BOUND
    retry, _ = _refresh(wired.auth, tokens["refresh_token"])
    assert retry.status_code == 200, retry.text
    _assert_alive(wired, uid, retry.json())
