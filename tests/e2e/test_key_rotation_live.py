"""Key rotation and emergency revocation with real processes while requests flow.

Two auth replicas share a key store and rotate on a short schedule (one of
them, by the Redis lock); a user service verifies every token. Refreshes and
profile reads go on throughout: not one verification may fail. Then the
signing key is revoked with the CLI, and the user service must refuse its
tokens within a second. Once with a key directory on SQLite (`make run`,
compose), once with KEY_STORE=database on PostgreSQL (Kubernetes).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tests.conftest import PG_ADMIN_URL, REDIS_URL, new_user
from tests.e2e.processes import ROOT, ServiceProcess

pytestmark = pytest.mark.e2e

# This suite's own ports (its range: 25000-25999).
AUTH_PORTS = (25101, 25102)
USER_PORT = 25103


class Cluster:
    def __init__(self, tmp: Path, prefix: str, *, auth_db: str | None = None) -> None:
        self.key_dir = tmp / "keys"
        # auth_db: KEY_STORE=database on that (PostgreSQL) database, shared by
        # both replicas; otherwise a key directory and SQLite.
        self.store_env = (
            {
                "KEY_STORE": "database",
                "DATABASE_URL": auth_db,
                "KEY_ENCRYPTION_KEY": secrets.token_urlsafe(32),
            }
            if auth_db
            else {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/auth.db"}
        )
        common = {
            "REDIS_URL": REDIS_URL,
            "REDIS_PREFIX": prefix,
            "ISSUER": "http://localhost:8000",
            "ENV": "test",
            "RATE_LIMIT_ENABLED": "false",
        }
        auth_env = {
            **common,
            **self.store_env,
            "KEY_DIR": str(self.key_dir),
            "USER_SERVICE_URL": f"http://127.0.0.1:{USER_PORT}",
            # A rotation every 6 s, each key published 3 s before it signs.
            "KEY_ROTATION_INTERVAL_SECONDS": "6",
            "KEY_ACTIVATION_DELAY_SECONDS": "3",
            "KEY_RELOAD_SECONDS": "0.5",
            "JWKS_MAX_AGE_SECONDS": "1",
        }
        self.auths = [ServiceProcess("auth_service", p, auth_env, tmp) for p in AUTH_PORTS]
        for i, a in enumerate(self.auths):
            a.log_path = tmp / f"auth{i}.log"
        self.user = ServiceProcess(
            "user_service",
            USER_PORT,
            {
                **common,
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/user.db",
                "JWKS_URL": f"http://127.0.0.1:{AUTH_PORTS[0]}/.well-known/jwks.json",
                # The user service learns a new key from its unknown-kid
                # refetch, never from its cache expiring during the test.
                "JWKS_CACHE_TTL_SECONDS": "3600",
                "JWKS_MIN_REFETCH_SECONDS": "2",
            },
            tmp,
        )
        self.prefix = prefix

    def start(self) -> None:
        self.auths[0].start()  # makes the first (development) key
        self.auths[1].start()
        self.user.start()

    def stop(self) -> None:
        self.user.stop()
        for a in self.auths:
            a.stop()


@pytest.fixture(params=["directory", "database"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str) -> Iterator[Cluster]:
    auth_db = None
    if request.param == "database":
        urls: dict[str, str] = request.getfixturevalue("pg_databases")
        auth_db = urls["auth"]
        # A clean schema: the replicas migrate it and make the first key in it.
        subprocess.run(
            [
                "psql",
                PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + auth_db.rsplit("/", 1)[1],
                "-qc",
                "DROP SCHEMA public CASCADE; CREATE SCHEMA public;",
            ],
            check=True,
            capture_output=True,
        )
    c = Cluster(tmp_path, redis_prefix, auth_db=auth_db)
    c.start()
    try:
        yield c
    finally:
        c.stop()


async def _session(client: httpx.AsyncClient, c: Cluster) -> tuple[str, dict[str, str]]:
    body = new_user()
    r = await client.post(f"{c.auths[0].url}/users", json=body)
    assert r.status_code == 201, r.text
    tok = await client.post(
        f"{c.auths[1].url}/login", json={"email": body["email"], "password": body["password"]}
    )
    assert tok.status_code == 200, tok.text
    return r.json()["id"], tok.json()


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def test_rotation_while_requests_flow_fails_no_verification(cluster: Cluster) -> None:
    kids: set[str] = set()
    failures: list[str] = []
    counts = {"refresh": 0, "read": 0}

    async def worker(client: httpx.AsyncClient, n: int, until: float) -> None:
        uid, tok = await _session(client, cluster)
        old_access = tok["access_token"]
        while time.monotonic() < until:
            auth = cluster.auths[n % 2]
            n += 1
            r = await client.post(
                f"{auth.url}/token/refresh", json={"refresh_token": tok["refresh_token"]}
            )
            counts["refresh"] += 1
            if r.status_code != 200:
                failures.append(f"refresh {r.status_code} {r.text[:200]}")
                return
            tok = r.json()
            kids.add(_kid(tok["access_token"]))
            # The fresh token and the previous one (signed, maybe, by the key
            # before) both verify at the user service.
            for access in (tok["access_token"], old_access):
                got = await client.get(
                    f"{cluster.user.url}/users/{uid}",
                    headers={"Authorization": f"Bearer {access}"},
                )
                counts["read"] += 1
                if got.status_code != 200:
                    failures.append(f"read {got.status_code} kid {_kid(access)} {got.text[:200]}")
            old_access = tok["access_token"]

    async def logins(client: httpx.AsyncClient, until: float) -> None:
        # Password logins too (argon2-bound, so fewer), alternating replicas.
        body = new_user()
        r = await client.post(f"{cluster.auths[0].url}/users", json=body)
        assert r.status_code == 201, r.text
        creds = {"email": body["email"], "password": body["password"]}
        n = 0
        while time.monotonic() < until:
            n += 1
            tok = await client.post(f"{cluster.auths[n % 2].url}/login", json=creds)
            counts["login"] = counts.get("login", 0) + 1
            if tok.status_code != 200:
                failures.append(f"login {tok.status_code} {tok.text[:200]}")
                continue
            access = tok.json()["access_token"]
            kids.add(_kid(access))
            got = await client.get(
                f"{cluster.user.url}/users/{r.json()['id']}",
                headers={"Authorization": f"Bearer {access}"},
            )
            counts["read"] += 1
            if got.status_code != 200:
                failures.append(f"read {got.status_code} kid {_kid(access)} {got.text[:200]}")

    async def run() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            until = time.monotonic() + 16
            await asyncio.gather(
                logins(client, until), *(worker(client, i, until) for i in range(4))
            )

    asyncio.run(run())
    assert not failures, failures[:5]
    # 16 s at one rotation per 6 s: the first key and at least two successors signed.
    assert len(kids) >= 3, kids
    assert counts["read"] > 100, counts
    assert counts.get("login", 0) >= 5, counts
    if "KEY_STORE" in cluster.store_env:
        assert not (cluster.key_dir / "manifest.json").exists(), "keys in the database only"
    print(f"rotation under load: {counts}, kids {len(kids)}, failures 0")


def test_a_revoked_key_is_refused_by_the_running_user_service_within_a_second(
    cluster: Cluster,
) -> None:
    async def login() -> tuple[str, dict[str, str]]:
        async with httpx.AsyncClient(timeout=10) as client:
            return await _session(client, cluster)

    uid, tok = asyncio.run(login())
    bearer = {"Authorization": f"Bearer {tok['access_token']}"}
    user_url = f"{cluster.user.url}/users/{uid}"
    assert httpx.get(user_url, headers=bearer).status_code == 200
    kid = _kid(tok["access_token"])
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "KEY_DIR": str(cluster.key_dir),
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": cluster.prefix,
    }
    env.pop("DATABASE_URL", None)
    if "KEY_STORE" in cluster.store_env:
        env.update(cluster.store_env)  # the service's own settings pick the store
    done = subprocess.run(
        [sys.executable, "-m", "auth_service.keys", "revoke", "--", kid],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    t0 = time.monotonic()
    while httpx.get(user_url, headers=bearer).status_code != 401:
        assert time.monotonic() - t0 < 1.0, "the revoked key's token still verifies"
    # Both auth replicas stop publishing it within the same second.
    for auth in cluster.auths:
        while kid in httpx.get(f"{auth.url}/.well-known/jwks.json").text:
            assert time.monotonic() - t0 < 1.0, "the revoked key is still published"
    # Service goes on: a refresh now gets a token of another key, and it verifies.
    deadline = time.monotonic() + 3
    while True:
        r = httpx.post(
            f"{cluster.auths[1].url}/token/refresh", json={"refresh_token": tok["refresh_token"]}
        )
        if r.status_code == 200:
            break
        assert time.monotonic() < deadline, r.text
        time.sleep(0.1)
    fresh = r.json()["access_token"]
    assert _kid(fresh) != kid
    got = httpx.get(user_url, headers={"Authorization": f"Bearer {fresh}"})
    assert got.status_code == 200, got.text
