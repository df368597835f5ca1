"""Faults injected into the dependencies of real service processes.

One pair of service processes for the module, wired to dependencies this
module owns and may break: its own redis-server (stopped, frozen, restarted),
the auth service's SQLite file (write-locked), and the user service's
PostgreSQL database (table-locked, or cut off by a proxy that stops
forwarding). The machine's shared Redis and PostgreSQL are never touched
beyond creating and dropping this module's own database.

What must hold (issue 7): a dependency failure answers 503 with a problem
body in bounded time, never a hang or a 500; nothing already stored is lost;
both services recover by themselves when the dependency returns.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import PG_ADMIN_URL, new_user
from tests.e2e.processes import Pair
from tests.faults.servers import OwnRedis, StallingProxy, register_and_login, start_processes

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

# A request against a broken dependency must end within this many seconds:
# the longest single wait is SQLite's busy timeout / PostgreSQL's statement
# timeout (5 s, shared/db/engine.py); Redis' socket timeout is 2 s.
BOUND = 12.0
TIMEOUT = httpx.Timeout(30.0)  # the client gives up later than BOUND: a hang shows as a failure


@dataclass
class Faulty:
    pair: Pair
    redis: OwnRedis
    proxy: StallingProxy
    pg_admin_db_url: str  # psql URL of the user service's database, bypassing the proxy
    tmp: Path

    @property
    def auth(self) -> str:
        return self.pair.auth.url

    @property
    def user(self) -> str:
        return self.pair.user.url


def _psql(url: str, sql: str) -> None:
    subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True, capture_output=True
    )


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faulty]:
    tmp = tmp_path_factory.mktemp("faults")
    own_redis = OwnRedis(tmp / "redis")
    own_redis.start()
    db = f"idp_fault_{uuid.uuid4().hex[:8]}"
    server = PG_ADMIN_URL.rsplit("/", 1)[0]
    _psql(PG_ADMIN_URL, f"CREATE DATABASE {db}")
    host_port = server.rsplit("@", 1)[1]
    pg_host, pg_port = host_port.split(":")
    try:
        with StallingProxy(pg_host, int(pg_port)) as proxy:
            pair = Pair(
                tmp,
                own_redis.url,
                "idp:",
                RATE_LIMIT_ENABLED="true",
                # Limits on (registration must touch Redis first, as in
                # production), wide enough for the load test; the per-account
                # network limit is small for the X-Forwarded-For test.
                LOGIN_IP_LIMIT="100000",
                REGISTER_IP_LIMIT="100000",
                REFRESH_IP_LIMIT="100000",
                LOGIN_ACCOUNT_NETWORK_LIMIT="3",
                # 127.0.0.1 (this test) is *not* a trusted proxy here.
                TRUSTED_PROXIES="192.0.2.10",
                # Key rotation under load, quickly (see that test).
                KEY_RELOAD_SECONDS="0.5",
                JWKS_MIN_REFETCH_SECONDS="1",
            )
            pair.user.env["DATABASE_URL"] = (
                f"postgresql+asyncpg://postgres@127.0.0.1:{proxy.port}/{db}"
            )
            start_processes(pair.auth, pair.user)
            try:
                yield Faulty(pair, own_redis, proxy, f"{server}/{db}", tmp)
            finally:
                pair.stop()
    finally:
        own_redis.stop()
        _psql(PG_ADMIN_URL, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def _timed(method: str, url: str, **kwargs: Any) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    r = httpx.request(method, url, timeout=TIMEOUT, **kwargs)
    return r, time.monotonic() - t0


def _assert_503(r: httpx.Response, elapsed: float) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["retry-after"]) >= 1
    problem = r.json()
    assert problem["status"] == 503
    assert problem["detail"]
    # Nothing internal leaks: no driver or host names, no SQL.
    for leak in ("redis", "Redis", "sqlite", "asyncpg", "SELECT", "127.0.0.1", "Traceback"):
        assert leak not in r.text, leak
    assert elapsed < BOUND, f"took {elapsed:.1f}s"


def _wait_until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "did not recover in time"
        time.sleep(0.2)


def _bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


# --- Redis ---------------------------------------------------------------------


def test_redis_down_is_503_everywhere_and_both_services_recover_unaided(faulty: Faulty) -> None:
    body = new_user()
    uid, tokens = register_and_login(faulty.auth, body)
    later = new_user()
    faulty.redis.stop()
    try:
        _assert_503(
            *_timed(
                "POST", f"{faulty.auth}/login", json={k: body[k] for k in ("email", "password")}
            )
        )
        _assert_503(
            *_timed(
                "POST",
                f"{faulty.auth}/token/refresh",
                json={"refresh_token": tokens["refresh_token"]},
            )
        )
        _assert_503(*_timed("POST", f"{faulty.auth}/users", json=later))
        # The user service fails closed: without the revocation list it cannot
        # tell a logged-out session from a live one.
        _assert_503(*_timed("GET", f"{faulty.user}/users/{uid}", headers=_bearer(tokens)))
        ready = httpx.get(f"{faulty.user}/readyz", timeout=TIMEOUT)
        assert ready.status_code == 503
    finally:
        faulty.redis.start()
    # No restart of either service: they reconnect on their own.
    _wait_until(
        lambda: httpx.get(f"{faulty.user}/users/{uid}", headers=_bearer(tokens)).status_code == 200
    )
    # Nothing stored before the outage was lost: the session's refresh token
    # still rotates, the account still logs in.
    refreshed = httpx.post(
        f"{faulty.auth}/token/refresh",
        json={"refresh_token": tokens["refresh_token"]},
        timeout=TIMEOUT,
    )
    assert refreshed.status_code == 200, refreshed.text
    login = httpx.post(
        f"{faulty.auth}/login", json={k: body[k] for k in ("email", "password")}, timeout=TIMEOUT
    )
    assert login.status_code == 200
    # Nothing half-made during it: the refused registration left no trace.
    assert httpx.post(f"{faulty.auth}/users", json=later, timeout=TIMEOUT).status_code == 201


def test_frozen_redis_is_503_in_bounded_time_not_a_hang(faulty: Faulty) -> None:
    body = new_user()
    uid, tokens = register_and_login(faulty.auth, body)
    faulty.redis.freeze()  # accepts connections, answers nothing
    try:
        _assert_503(
            *_timed(
                "POST", f"{faulty.auth}/login", json={k: body[k] for k in ("email", "password")}
            )
        )
        _assert_503(*_timed("GET", f"{faulty.user}/users/{uid}", headers=_bearer(tokens)))
    finally:
        faulty.redis.thaw()
    _wait_until(
        lambda: httpx.get(f"{faulty.user}/users/{uid}", headers=_bearer(tokens)).status_code == 200
    )
    assert (
        httpx.post(
            f"{faulty.auth}/token/refresh",
            json={"refresh_token": tokens["refresh_token"]},
            timeout=TIMEOUT,
        ).status_code
        == 200
    )


# --- databases -----------------------------------------------------------------


@contextlib.contextmanager
def _sqlite_write_lock(path: Path) -> Iterator[None]:
    """Hold SQLite's write lock (WAL: readers still read, writers wait)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_locked_sqlite_is_503_in_bounded_time_and_reads_continue(faulty: Faulty) -> None:
    body = new_user()
    register_and_login(faulty.auth, body)
    blocked = new_user()
    with _sqlite_write_lock(faulty.tmp / "auth.db"):
        _assert_503(*_timed("POST", f"{faulty.auth}/users", json=blocked))
        # WAL: a held write lock does not stop logins (reads).
        r, _ = _timed(
            "POST", f"{faulty.auth}/login", json={k: body[k] for k in ("email", "password")}
        )
        assert r.status_code == 200, r.text
    # The refused registration left nothing behind: the email is free.
    assert httpx.post(f"{faulty.auth}/users", json=blocked, timeout=TIMEOUT).status_code == 201


def test_locked_postgres_table_is_503_in_bounded_time(faulty: Faulty) -> None:
    uid, tokens = register_and_login(faulty.auth, new_user())
    # psql holds ACCESS EXCLUSIVE (blocks reads too) for longer than the
    # statement timeout, in its own session, while we ask for the profile.
    holder = subprocess.Popen(
        [
            "psql", faulty.pg_admin_db_url, "-qc",
            "BEGIN; LOCK TABLE profiles IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(30); COMMIT;",
        ],
        env={**os.environ, "PGAPPNAME": "idp_fault_lock_holder"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(1.0)  # let it take the lock
        _assert_503(*_timed("GET", f"{faulty.user}/users/{uid}", headers=_bearer(tokens)))
    finally:
        # Cancel the holder's sleep (its transaction aborts, the lock goes).
        _psql(
            faulty.pg_admin_db_url,
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'idp_fault_lock_holder'",
        )
        holder.wait(timeout=30)
    assert (
        httpx.get(
            f"{faulty.user}/users/{uid}", headers=_bearer(tokens), timeout=TIMEOUT
        ).status_code
        == 200
    )


def test_postgres_that_stops_answering_is_503_in_bounded_time(faulty: Faulty) -> None:
    # No server-side timeout helps here: the server never sees the query.
    uid, tokens = register_and_login(faulty.auth, new_user())
    faulty.proxy.stall()
    try:
        _assert_503(*_timed("GET", f"{faulty.user}/users/{uid}", headers=_bearer(tokens)))
    finally:
        faulty.proxy.resume()
    _wait_until(
        lambda: (
            httpx.get(
                f"{faulty.user}/users/{uid}", headers=_bearer(tokens), timeout=TIMEOUT
            ).status_code
            == 200
        )
    )


# --- transport -----------------------------------------------------------------


def test_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(faulty: Faulty) -> None:
    body = new_user()
    register_and_login(faulty.auth, body)
    creds = {"email": body["email"], "password": "Wrong-password-1234"}
    # Per-(account, network) limit is 3 here. A believed X-Forwarded-For
    # would make each attempt a fresh network and never reach it.
    codes = []
    for i in range(4):
        r = httpx.post(
            f"{faulty.auth}/login",
            json=creds,
            headers={"X-Forwarded-For": f"203.0.113.{i + 1}", "X-Request-ID": f"xff-probe-{i:04d}"},
            timeout=TIMEOUT,
        )
        codes.append(r.status_code)
    assert codes == [401, 401, 401, 429], codes
    # The audit trail names the real peer, not the forged one.
    records = [
        json.loads(line)
        for line in faulty.pair.auth.log_path.read_text().splitlines()
        if line.startswith("{") and "xff-probe-" in line
    ]
    assert records, "no audit records for the probe requests"
    assert {rec["client_ip"] for rec in records} == {"127.0.0.1"}
    # And so does the session record.
    login = httpx.post(
        f"{faulty.auth}/login",
        json={"email": body["email"], "password": body["password"]},
        headers={"X-Forwarded-For": "203.0.113.200"},
        timeout=TIMEOUT,
    )
    assert login.status_code == 429  # still limited: the right password included


# --- key rotation --------------------------------------------------------------


def test_key_rotation_under_load_fails_no_request(faulty: Faulty) -> None:
    """Logins and profile reads run concurrently across `keys rotate`.

    The new key is published at once and signs after --activate-after 2 s,
    longer than the auth service's key reload (0.5 s here) and the user
    service's unknown-kid refetch interval (1 s here): the README's rule,
    scaled down. Every request must succeed: zero failures, old tokens keep
    working, and the user service learns the new kid on first sight.
    """
    accounts = [new_user() for _ in range(4)]
    sessions = [register_and_login(faulty.auth, body) for body in accounts]
    old_kid = jwt.get_unverified_header(sessions[0][1]["access_token"])["kid"]
    failures: list[str] = []
    served = [0]
    kids_accepted: set[str] = set()
    stop = threading.Event()
    lock = threading.Lock()

    def worker(body: dict[str, str], uid: str, old_tokens: dict[str, Any]) -> None:
        with httpx.Client(timeout=TIMEOUT) as client:
            while not stop.is_set():
                # A token from before the rotation keeps working...
                r = client.get(f"{faulty.user}/users/{uid}", headers=_bearer(old_tokens))
                if r.status_code != 200:
                    with lock:
                        failures.append(f"old token read: {r.status_code} {r.text[:120]}")
                # ...and a fresh login's token is accepted at once, whichever key signed it.
                login = client.post(
                    f"{faulty.auth}/login",
                    json={"email": body["email"], "password": body["password"]},
                )
                if login.status_code != 200:
                    with lock:
                        failures.append(f"login: {login.status_code} {login.text[:120]}")
                    continue
                fresh = login.json()
                r = client.get(f"{faulty.user}/users/me", headers=_bearer(fresh))
                with lock:
                    served[0] += 3
                    if r.status_code == 200:
                        kids_accepted.add(jwt.get_unverified_header(fresh["access_token"])["kid"])
                    else:
                        failures.append(f"fresh token read: {r.status_code} {r.text[:120]}")

    threads = [
        threading.Thread(target=worker, args=(body, uid, tokens))
        for body, (uid, tokens) in zip(accounts, sessions, strict=True)
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)  # load before the rotation
        rotated = subprocess.run(
            [
                sys.executable, "-m", "auth_service.keys", "rotate",
                "--activate-after", "2", "--key-dir", str(faulty.tmp / "keys"),
            ],
            capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )  # fmt: skip
        assert rotated.returncode == 0, rotated.stderr
        deadline = time.monotonic() + 60
        while len(kids_accepted - {old_kid}) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # load after the switch too
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not failures, failures[:5]
    assert served[0] >= 30, "too little load to mean anything"
    assert old_kid in kids_accepted
    assert kids_accepted - {old_kid}, "the auth service never signed with the rotated key"
