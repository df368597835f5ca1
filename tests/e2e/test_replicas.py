"""`REPLICAS=2 make run`: two processes of each service behind the gateway.

Bounded load flows through the nginx gateway while one replica of each
service is killed (SIGKILL) and the signing key rotates: only requests in
flight on a killed process may fail, and a logout still reaches every user
replica, the restarted one included, within a second. The auth service's own
calls to the user service (a registration creates the profile through
/internal/profiles) go through the gateway's loopback listener, so they too
pass over a dead user replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tests.conftest import REDIS_URL, new_user
from tests.e2e.processes import ROOT

pytestmark = pytest.mark.e2e

# This suite's own ports (its range: 25000-25999); replica 2 is port + 10.
GATEWAY, AUTH, USER, GATEWAY_METRICS = 25400, 25401, 25402, 25403
WORKERS = 4


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def _pid_on(port: int) -> int:
    out = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"pid=(\d+)", out)
    assert found, f"nothing listens on {port}"
    return int(found.group(1))


@pytest.fixture
def cluster(tmp_path: Path, redis_prefix: str) -> Iterator[Path]:
    log = tmp_path / "cluster.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REPLICAS": "2",
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": redis_prefix,
        "ENV": "test",
        "RATE_LIMIT_ENABLED": "false",
        "KEY_ROTATION_INTERVAL_SECONDS": "6",
        "KEY_ACTIVATION_DELAY_SECONDS": "3",
        "KEY_RELOAD_SECONDS": "0.5",
        "JWKS_MAX_AGE_SECONDS": "1",
        "JWKS_MIN_REFETCH_SECONDS": "2",
    }
    argv = [sys.executable, str(ROOT / "deploy" / "local" / "cluster.py")]
    argv += ["--gateway", "nginx", "--data-dir", str(tmp_path / "data")]
    argv += ["--gateway-port", str(GATEWAY), "--auth-port", str(AUTH), "--user-port", str(USER)]
    argv += ["--gateway-metrics-port", str(GATEWAY_METRICS)]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "cluster ready" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield log
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_killing_a_replica_of_each_service_while_keys_rotate(cluster: Path) -> None:
    base = f"http://127.0.0.1:{GATEWAY}"
    failures: list[str] = []
    kids: set[str] = set()
    done = {"requests": 0}

    async def session(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
        body = new_user()
        r = await client.post(f"{base}/users", json=body)
        assert r.status_code == 201, r.text
        tok = await client.post(
            f"{base}/login", json={"email": body["email"], "password": body["password"]}
        )
        assert tok.status_code == 200, tok.text
        return r.json()["id"], tok.json()

    async def worker(client: httpx.AsyncClient, until: float) -> None:
        uid, tok = await session(client)
        while time.monotonic() < until:
            done["requests"] += 2
            try:
                r = await client.post(
                    f"{base}/token/refresh", json={"refresh_token": tok["refresh_token"]}
                )
            except httpx.TransportError as exc:
                failures.append(f"refresh {type(exc).__name__}")
                continue  # the retry of a lost answer gets the same successor
            if r.status_code != 200:
                failures.append(f"refresh {r.status_code} {r.text[:120]}")
                continue
            tok = r.json()
            kids.add(str(jwt.get_unverified_header(tok["access_token"])["kid"]))
            got = await client.get(
                f"{base}/users/{uid}", headers={"Authorization": f"Bearer {tok['access_token']}"}
            )
            if got.status_code != 200:
                failures.append(f"read {got.status_code} {got.text[:120]}")

    async def killer() -> None:
        await asyncio.sleep(4)
        os.kill(_pid_on(AUTH + 10), signal.SIGKILL)
        await asyncio.sleep(4)
        os.kill(_pid_on(USER + 10), signal.SIGKILL)

    async def run() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            until = time.monotonic() + 18
            await asyncio.gather(killer(), *(worker(client, until) for _ in range(WORKERS)))

    asyncio.run(run())
    print(f"{done['requests']} requests, {len(failures)} failed: {failures}")
    # At most the requests in flight on each killed process (one per worker).
    assert len(failures) <= 2 * WORKERS, failures
    assert done["requests"] > 100, done
    assert len(kids) >= 3, f"expected at least two rotations, saw {kids}"
    log = cluster.read_text(errors="replace")
    assert "auth2 exited (killed by SIGKILL); starting it again" in log
    assert "user2 exited (killed by SIGKILL); starting it again" in log

    # Revocation reaches every user replica (the restarted one too) within a second.
    for port in (USER, USER + 10):
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            assert time.monotonic() < deadline, f"replica on {port} did not come back"
            time.sleep(0.2)
    # The gateway passes over a replica for fail_timeout (nginx's default, 10 s)
    # after its last failed attempt, here the restart of user2. Once that
    # has passed, the one replica killed below is the only one it skips.
    user2_back = time.monotonic()

    async def login() -> tuple[str, dict[str, str]]:
        async with httpx.AsyncClient(timeout=10) as client:
            return await session(client)

    uid, tok = asyncio.run(login())
    bearer = {"Authorization": f"Bearer {tok['access_token']}"}
    for port in (USER, USER + 10):
        assert httpx.get(f"http://127.0.0.1:{port}/users/{uid}", headers=bearer).status_code == 200
    assert httpx.post(f"{base}/logout", headers=bearer).status_code == 204
    t0 = time.monotonic()
    for port in (USER, USER + 10):
        url = f"http://127.0.0.1:{port}/users/{uid}"
        while httpx.get(url, headers=bearer).status_code != 401:
            assert time.monotonic() - t0 < 1.0, f"replica on {port} still accepts the token"

    # The first user replica (the one USER_SERVICE_URL used to name) is dead:
    # a registration, whose profile the auth service creates through the user
    # service's /internal/profiles, still succeeds through the other one. The
    # cluster restarts the killed replica within seconds; the answer counts
    # only if it came while the replica still refused connections.
    assert httpx.get(f"{base}/internal/profiles").status_code == 404  # never public
    time.sleep(max(0.0, user2_back + 11 - time.monotonic()))
    for _ in range(5):
        os.kill(_pid_on(USER), signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not _refuses_connections(USER):
            assert time.monotonic() < deadline, "the killed replica's port stayed open"
            time.sleep(0.05)
        body = new_user()
        registered = httpx.post(f"{base}/users", json=body, timeout=10)
        if _refuses_connections(USER):
            break
        time.sleep(5)  # it came back first; let it settle and try again
    else:
        pytest.fail("the killed user replica always came back before the registration ended")
    assert registered.status_code == 201, registered.text
    new_id = registered.json()["id"]
    tok = httpx.post(
        f"{base}/login", json={"email": body["email"], "password": body["password"]}
    ).json()
    profile = httpx.get(
        f"http://127.0.0.1:{USER + 10}/users/{new_id}",
        headers={"Authorization": f"Bearer {tok['access_token']}"},
    )
    assert profile.status_code == 200, profile.text
    assert profile.json()["email"] == body["email"]


def test_the_python_gateway_passes_over_a_replica_that_refuses_connections(tmp_path: Path) -> None:
    # deploy/local/gateway.py, the fallback without nginx: a dead replica
    # (nothing on 25498) and a live one (a plain HTTP server on 25497).
    from tests.e2e.test_cluster_script import _load

    gateway_module = _load("gateway")
    for folder in ("users", "internal"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x").write_text("from the live replica")
    live = subprocess.Popen(
        [sys.executable, "-m", "http.server", "25497", "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(httpx.TransportError):
                httpx.get("http://127.0.0.1:25497/")
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)

        upstreams = "http://127.0.0.1:25498,http://127.0.0.1:25497"

        def gateway(*, internal: bool) -> object:
            return gateway_module.Gateway(
                auth_upstream=upstreams, user_upstream=upstreams, internal=internal
            )

        async def run(app: object, base_url: str, path: str) -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
                return [await client.get(path) for _ in range(4)]

        public = gateway(internal=False)
        for response in asyncio.run(run(public, "http://gw", "/users/x")):
            assert response.status_code == 200
            assert response.text == "from the live replica"
        # The internal listener (service-to-service, --internal-port) passes
        # /internal/ paths to the user replicas, over the dead one; the public
        # one never does. Which one answers is the socket's own address.
        app = gateway_module.Listeners(public, gateway(internal=True), 25496)
        for response in asyncio.run(run(app, "http://127.0.0.1:25496", "/internal/x")):
            assert response.status_code == 200
            assert response.text == "from the live replica"
        for response in asyncio.run(run(app, "http://127.0.0.1:25495", "/internal/x")):
            assert response.status_code == 404
    finally:
        live.terminate()
        live.wait(timeout=10)
