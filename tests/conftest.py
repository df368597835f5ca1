"""Suite-wide fixtures: the real Redis and databases on this machine, and both
services wired together in-process.

Tests talk to the real Redis (127.0.0.1:6379) under a key prefix of their own
and to a real database: a SQLite file per test, or a PostgreSQL database made
for the run (127.0.0.1:5432, trust auth). Nothing is mocked: the auth app
calls the user app, and the user app fetches the auth app's JWKS, through
httpx's ASGI transport.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

# A suite-wide fixture kept in tests/support, registered here by name.
from tests.support.audit import audit  # noqa: F401

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_ADMIN_URL = os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


# `make test` runs the suite on two pytest-xdist workers, a file per worker
# (`--dist loadfile`). The cluster script's gateway metrics port (mtail)
# defaults to a fixed one: here every cluster takes a free port instead, as
# the topology tests take a port range per worker (tests/topologies/conftest.py).
os.environ.setdefault("GATEWAY_METRICS_PORT", "0")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key namespace of this test's own on the real Redis, removed afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", PG_ADMIN_URL, "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[dict[str, str]]:
    """Two fresh PostgreSQL databases (one per service) for this test run."""
    run = uuid.uuid4().hex[:8]
    names = {"auth": f"idp_test_auth_{run}", "user": f"idp_test_user_{run}"}
    for name in names.values():
        _psql(f"CREATE DATABASE {name}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield {svc: f"{base}/{name}" for svc, name in names.items()}
    for name in names.values():
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def db_urls(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Database URLs per service, once for each backend."""
    if request.param == "sqlite":
        return {
            "auth": f"sqlite+aiosqlite:///{tmp_path}/auth.db",
            "user": f"sqlite+aiosqlite:///{tmp_path}/user.db",
        }
    urls: dict[str, str] = request.getfixturevalue("pg_databases")
    # Each test gets clean tables: drop what earlier tests made.
    for name in ("auth", "user"):
        db = urls[name].rsplit("/", 1)[1]
        subprocess.run(
            [
                "psql",
                PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + db,
                "-qc",
                "DROP SCHEMA public CASCADE; CREATE SCHEMA public;",
            ],
            check=True,
            capture_output=True,
        )
    return urls


@pytest.fixture
def sqlite_urls(tmp_path: Path) -> dict[str, str]:
    return {
        "auth": f"sqlite+aiosqlite:///{tmp_path}/auth.db",
        "user": f"sqlite+aiosqlite:///{tmp_path}/user.db",
    }


class _LateASGITransport(httpx.ASGITransport):
    """An ASGI transport whose app is attached after construction (the two
    services call each other, so one of them has to exist first)."""

    def __init__(self) -> None:
        super().__init__(app=_unset)

    def attach(self, app: FastAPI) -> None:
        self.app = app


async def _unset(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("transport used before an app was attached")


ISSUER = "http://localhost:8000"


@dataclass
class Services:
    auth_app: FastAPI
    user_app: FastAPI
    auth: httpx.AsyncClient
    user: httpx.AsyncClient
    auth_settings: Any
    user_settings: Any


def auth_settings(**overrides: Any) -> Any:
    from auth_service.config import AuthSettings

    base: dict[str, Any] = {
        "env": "test",
        "issuer": ISSUER,
        "user_service_url": "http://user-service",
        # Rate limits are exercised by their own tests; elsewhere one client
        # (the test) makes many attempts from one IP on purpose.
        "rate_limit_enabled": False,
    }
    base.update(overrides)
    return AuthSettings(**base)


def user_settings(**overrides: Any) -> Any:
    from user_service.config import UserSettings

    base: dict[str, Any] = {
        "env": "test",
        "issuer": ISSUER,
        "jwks_url": "http://auth-service/.well-known/jwks.json",
    }
    base.update(overrides)
    return UserSettings(**base)


async def start_services(
    *,
    tmp_path: Path,
    redis_prefix: str,
    urls: dict[str, str],
    auth: dict[str, Any] | None = None,
    user: dict[str, Any] | None = None,
    redis: dict[str, Any] | None = None,
) -> AsyncIterator[Services]:
    """Both apps wired in-process; `redis`: the Redis settings of both
    (default: REDIS_URL of the suite's server; tests/topologies pass a
    Sentinel group or a Cluster)."""
    from auth_service.main import create_app as create_auth
    from user_service.main import create_app as create_user

    to_auth, to_user = _LateASGITransport(), _LateASGITransport()
    redis = redis if redis is not None else {"redis_url": REDIS_URL}
    a_settings = auth_settings(
        database_url=urls["auth"],
        **redis,
        redis_prefix=redis_prefix,
        key_dir=tmp_path / "keys",
        **(auth or {}),
    )
    u_settings = user_settings(
        database_url=urls["user"], **redis, redis_prefix=redis_prefix, **(user or {})
    )
    auth_app = create_auth(a_settings, user_service_transport=to_user)
    user_app = create_user(u_settings, jwks_transport=to_auth)
    to_auth.attach(auth_app)
    to_user.attach(user_app)
    async with (
        LifespanManager(auth_app),
        LifespanManager(user_app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(auth_app), base_url="http://auth-service"
        ) as a,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(user_app), base_url="http://user-service"
        ) as u,
    ):
        yield Services(auth_app, user_app, a, u, a_settings, u_settings)


@pytest.fixture
async def services(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str]
) -> AsyncIterator[Services]:
    """Both services on SQLite + real Redis, wired together in-process."""
    async for s in start_services(tmp_path=tmp_path, redis_prefix=redis_prefix, urls=sqlite_urls):
        yield s


@pytest.fixture
async def services_any_db(
    tmp_path: Path, redis_prefix: str, db_urls: dict[str, str]
) -> AsyncIterator[Services]:
    """Both services, once on SQLite and once on PostgreSQL."""
    async for s in start_services(tmp_path=tmp_path, redis_prefix=redis_prefix, urls=db_urls):
        yield s


SEED = {
    "name": "John Doe",
    "email": "john@example.com",
    "date_of_birth": "1980-04-14T10:00:00Z",
    "job_title": "Engineer",
    "password": "Str0ngP@ssw0rd!!",
}


def new_user(**overrides: str) -> dict[str, str]:
    """A valid registration body with a unique email."""
    body = dict(SEED)
    body["email"] = f"user-{uuid.uuid4().hex[:10]}@example.com"
    body.update(overrides)
    return body


async def rejected_within_a_second(
    client: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> bool:
    """Poll until the user service answers 401, for at most the one-second
    revocation contract (docs/ARCHITECTURE.md, "Revocation"). Resource servers
    learn revocations from a pub/sub channel, so the answer may lag the logout
    response by a few ms."""
    import asyncio
    import time

    deadline = time.monotonic() + 1.0
    while True:
        if (await client.get(path, headers=headers)).status_code == 401:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)


# --- mail: the development sink (deploy/local/mail_sink.py) on a free port ---
@dataclass
class MailSink:
    url: str
    directory: Path


@pytest.fixture
def mail_sink(tmp_path: Path) -> Iterator[MailSink]:
    """The development mail sink (deploy/local/mail_sink.py) on a free port."""
    from tests.support.mail import load_sink

    directory = tmp_path / "mail"
    controller = load_sink().start_sink(directory)
    try:
        yield MailSink(f"smtp://127.0.0.1:{controller.port}", directory)
    finally:
        controller.stop()


async def mailing_services(
    tmp_path: Path,
    redis_prefix: str,
    urls: dict[str, str],
    sink: MailSink,
    **auth: Any,
) -> AsyncIterator[Services]:
    async for s in start_services(
        tmp_path=tmp_path,
        redis_prefix=redis_prefix,
        urls=urls,
        auth={"smtp_url": sink.url, **auth},
    ):
        yield s


@pytest.fixture
async def mailing(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str], mail_sink: MailSink
) -> AsyncIterator[Services]:
    """Both services on SQLite, mail to the sink."""
    async for s in mailing_services(tmp_path, redis_prefix, sqlite_urls, mail_sink):
        yield s


async def mail_sent(s: Services) -> None:
    """Wait until the auth service's outbox has sent what was queued."""
    await s.auth_app.state.ctx.outbox.drain()
