"""Both services behind a real PgBouncer in transaction mode (`?pool_mode=transaction`)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared.db.engine import make_engine
from tests.conftest import Services, new_user, start_services

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

PGBOUNCER_PORT = 25200  # this suite's own range: 25000-25999


@pytest.fixture
def pgbouncer() -> Iterator[int]:
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        pytest.fail("pgbouncer is not installed (apt-get install pgbouncer)")
    # PgBouncer will not run as root; it switches to `postgres`, which must read this.
    work = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    work.chmod(0o755)
    (work / "users.txt").write_text('"postgres" ""\n')
    (work / "pgbouncer.ini").write_text(
        "[databases]\n* = host=127.0.0.1 port=5432\n"
        "[pgbouncer]\nlisten_addr = 127.0.0.1\n"
        f"listen_port = {PGBOUNCER_PORT}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {work}/users.txt\n"
        # Few server connections for many clients: transactions of one client
        # connection land on different server connections.
        "pool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 200\n"
    )
    for f in work.iterdir():
        f.chmod(0o644)
    proc = subprocess.Popen(
        [binary, "-u", "postgres", str(work / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(
            ["pg_isready", "-h", "127.0.0.1", "-p", str(PGBOUNCER_PORT)], capture_output=True
        ).returncode:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "pgbouncer did not start"
            time.sleep(0.1)
        yield PGBOUNCER_PORT
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def bounced_urls(pg_databases: dict[str, str], pgbouncer: int) -> dict[str, str]:
    return {
        svc: url.replace("127.0.0.1:5432", f"127.0.0.1:{pgbouncer}") + "?pool_mode=transaction"
        for svc, url in pg_databases.items()
    }


@pytest.fixture
async def bounced(
    tmp_path: Path, redis_prefix: str, bounced_urls: dict[str, str]
) -> AsyncIterator[Services]:
    # Migrations run at start (ENV=test) through the pooler too.
    async for s in start_services(tmp_path=tmp_path, redis_prefix=redis_prefix, urls=bounced_urls):
        yield s


async def test_concurrent_requests_through_pgbouncer_in_transaction_mode(
    bounced: Services,
) -> None:
    async def walk() -> None:
        body = new_user()
        r = await bounced.auth.post("/users", json=body)
        assert r.status_code == 201, r.text
        tok = await bounced.auth.post(
            "/login", json={"email": body["email"], "password": body["password"]}
        )
        assert tok.status_code == 200, tok.text
        bearer = {"Authorization": f"Bearer {tok.json()['access_token']}"}
        for _ in range(5):
            got = await bounced.user.get(f"/users/{r.json()['id']}", headers=bearer)
            assert got.status_code == 200, got.text

    await asyncio.gather(*(walk() for _ in range(6)))


async def _many_clients(url: str) -> list[int]:
    engine = make_engine(url)
    try:

        async def query(n: int) -> int:
            async with engine.connect() as conn:
                for i in range(10):
                    # Distinct statements, each prepared, on 8 client
                    # connections sharing 2 server connections.
                    sql = text(f"SELECT CAST(:n AS integer) + {i}")
                    assert (await conn.execute(sql, {"n": n})).scalar_one() == n + i
                    await conn.commit()
            return n

        return sorted(await asyncio.gather(*(query(i) for i in range(8))))
    finally:
        await engine.dispose()


async def test_statements_on_many_connections_need_the_transaction_mode_setting(
    bounced_urls: dict[str, str],
) -> None:
    assert await _many_clients(bounced_urls["user"]) == list(range(8))
    # The same workload without `pool_mode=transaction`: asyncpg's named,
    # cached prepared statements meet each other on the shared server
    # connections. This is what the setting is for.
    plain = bounced_urls["user"].removesuffix("?pool_mode=transaction")
    with pytest.raises(DBAPIError):
        await _many_clients(plain)
