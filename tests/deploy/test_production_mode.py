"""ENV=production refuses what is fine on a laptop, one named test per refusal.

Configuration refusals come from the settings classes (a list of every
problem, raised before anything starts); backend refusals (schema not at
head, an embedded fake Redis, development keys) from the app's start-up. The
happy path runs too: a production start on the real PostgreSQL and a real,
password-protected Redis.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import inspect

from auth_service.config import AuthSettings
from auth_service.keys import DevKeysRefused, KeyRing, rotate
from auth_service.migrate import MIGRATIONS as AUTH
from shared.db.engine import make_engine
from shared.db.migrations import upgrade_to_head
from shared.runtime.settings import ProductionConfigError
from tests.e2e.processes import free_port
from user_service.config import UserSettings
from user_service.migrate import MIGRATIONS as USER

SETTINGS_CLASSES = [pytest.param(AuthSettings, id="auth"), pytest.param(UserSettings, id="user")]
PG_PASSWORD = "ignored-by-trust-auth-but-present"
TOTP_KEY = secrets.token_urlsafe(32)


def safe_production(**overrides: Any) -> dict[str, Any]:
    """Settings that pass every production check (the baseline each test breaks once)."""
    values: dict[str, Any] = {
        "env": "production",
        "issuer": "https://idp.example.com",
        "docs_enabled": False,
        "database_url": f"postgresql+asyncpg://idp:{PG_PASSWORD}@db.internal:5432/idp",
        "redis_url": "rediss://:a-long-random-secret@redis.internal:6379/0",
        "cors_origins": "https://app.example.com",
        "webauthn_rp_id": "idp.example.com",
        "webauthn_origins": "https://idp.example.com",
        "totp_encryption_key": TOTP_KEY,
    }
    values.update(overrides)
    return values


def _settings(cls: type[Any], **overrides: Any) -> Any:
    values = safe_production(**overrides)
    if cls is UserSettings:
        values.pop("webauthn_rp_id")
        values.pop("webauthn_origins")
        values.pop("totp_encryption_key")
    return cls(**values)


# --- configuration refusals --------------------------------------------------------


@pytest.mark.parametrize("cls", SETTINGS_CLASSES)
def test_safe_production_settings_are_accepted(cls: type[Any]) -> None:
    assert _settings(cls).is_production


REFUSALS = [
    pytest.param({"docs_enabled": True}, "DOCS_ENABLED must be false", id="docs-exposed"),
    pytest.param(
        {"database_url": "sqlite+aiosqlite:///./.data/x.db"},
        "DATABASE_URL must point at PostgreSQL",
        id="sqlite",
    ),
    pytest.param(
        {"database_url": "postgresql+asyncpg://idp@db.internal/idp"},
        "DATABASE_URL must carry a password",
        id="database-without-password",
    ),
    pytest.param(
        {"database_url": "postgresql+asyncpg://idp:CHANGE-ME@db.internal/idp"},
        "DATABASE_URL carries a placeholder password",
        id="database-placeholder-password",
    ),
    pytest.param(
        {"redis_url": "redis://127.0.0.1:6379/0"},
        "REDIS_URL must carry a password",
        id="redis-default-no-password",
    ),
    pytest.param(
        {"redis_url": "redis://:changeme@redis.internal:6379/0"},
        "REDIS_URL carries a placeholder password",
        id="redis-placeholder-password",
    ),
    pytest.param({"cors_origins": "*"}, "CORS_ORIGINS must list origins", id="wildcard-cors"),
    pytest.param(
        {"cors_origins": "https://ok.example.com,http://plain.example.com"},
        "CORS_ORIGINS must be https origins",
        id="plain-http-cors-origin",
    ),
    pytest.param({"issuer": "http://idp.example.com"}, "ISSUER must be an https URL", id="http"),
]


@pytest.mark.parametrize("cls", SETTINGS_CLASSES)
@pytest.mark.parametrize(("override", "expected"), REFUSALS)
def test_production_refuses(cls: type[Any], override: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError, match="unsafe production settings") as caught:
        _settings(cls, **override)
    assert expected in str(caught.value)


def test_production_refuses_to_start_without_a_totp_key() -> None:
    # A generated key would sit beside the data it protects, or differ per replica.
    with pytest.raises(ValidationError, match="TOTP_ENCRYPTION_KEY must be set"):
        _settings(AuthSettings, totp_encryption_key="")


@pytest.mark.parametrize("env", ["production", "development"])
@pytest.mark.parametrize(
    "bad",
    ["too-short", "!" * 43, secrets.token_urlsafe(16)],
    ids=["too-short", "not-base64url", "16-bytes"],
)
def test_a_malformed_totp_key_is_refused_in_every_mode(env: str, bad: str) -> None:
    with pytest.raises(ValidationError, match="TOTP_ENCRYPTION_KEY") as caught:
        _settings(AuthSettings, env=env, totp_encryption_key=bad)
    assert bad not in str(caught.value)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        UserSettings(
            env="production",
            issuer="http://localhost:8000",
            database_url="sqlite+aiosqlite:///x.db",
            redis_url="redis://127.0.0.1:6379/0",
            cors_origins="*",
        )
    message = str(caught.value)
    for fragment in ("DOCS_ENABLED", "DATABASE_URL", "ISSUER", "REDIS_URL", "CORS_ORIGINS"):
        assert fragment in message


def test_passwords_never_appear_in_the_refusal() -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(UserSettings, docs_enabled=True)
    assert PG_PASSWORD not in str(caught.value)
    assert "a-long-random-secret" not in str(caught.value)


def test_production_error_type_is_importable_for_callers() -> None:
    # pydantic wraps validator errors; the cause stays a ProductionConfigError.
    with pytest.raises(ValidationError) as caught:
        _settings(UserSettings, docs_enabled=True)
    assert isinstance(caught.value.errors()[0]["ctx"]["error"], ProductionConfigError)


def test_development_keeps_the_laptop_defaults() -> None:
    settings = UserSettings(env="development", cors_origins="*")
    assert settings.cors_origin_list == ["*"]
    assert settings.docs_enabled


@pytest.mark.parametrize(
    "origin", ["https://app.example.com/", "app.example.com", "https://app.example.com/path"]
)
def test_cors_origins_must_be_bare_origins(origin: str) -> None:
    with pytest.raises(ValidationError, match="CORS_ORIGINS"):
        UserSettings(env="development", cors_origins=origin)


# --- signing keys -------------------------------------------------------------------


def test_production_refuses_keys_generated_by_a_development_start(tmp_path: Path) -> None:
    dev = KeyRing.load(tmp_path, generate_if_missing=True)
    with pytest.raises(DevKeysRefused, match=dev.keys[0].kid):
        KeyRing.load(tmp_path, generate_if_missing=False, allow_dev_keys=False)


def test_production_accepts_keys_made_by_the_operator_cli(tmp_path: Path) -> None:
    key = rotate(tmp_path, activate_after_seconds=0)
    ring = KeyRing.load(tmp_path, generate_if_missing=False, allow_dev_keys=False)
    assert ring.current_signing_key().kid == key.kid


def test_production_refuses_missing_keys(tmp_path: Path) -> None:
    from auth_service.keys import NoSigningKeys

    with pytest.raises(NoSigningKeys, match="run `rotate`"):
        KeyRing.load(tmp_path / "empty", generate_if_missing=False, allow_dev_keys=False)


def test_a_replica_does_not_adopt_a_development_key_later(tmp_path: Path) -> None:
    first = rotate(tmp_path, activate_after_seconds=0)
    ring = KeyRing.load(tmp_path, generate_if_missing=False, allow_dev_keys=False)
    rotate(tmp_path, activate_after_seconds=0)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["keys"][-1]["dev"] = True
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DevKeysRefused):
        ring.reload_if_changed()
    assert [k.kid for k in ring.keys] == [first.kid]  # still signing with the good key


# --- backends at start (real PostgreSQL, real Redis) ---------------------------------


@pytest.fixture(scope="module")
def redis_with_password() -> Iterator[str]:
    """A real redis-server of this module's own, with requirepass, like production."""
    server = shutil.which("redis-server")
    assert server, "redis-server is not installed (.ci/run installs it)"
    port, password = free_port(), secrets.token_urlsafe(16)
    proc = subprocess.Popen(
        [
            *(server, "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--requirepass", password),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            client = redis.Redis.from_url(url)
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
            finally:
                client.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def fake_redis_url() -> Iterator[str]:
    """The embedded server `make run` uses when REDIS_URL is unset."""
    from fakeredis import TcpFakeServer

    server = TcpFakeServer(("127.0.0.1", 0))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"redis://:a-long-random-secret@127.0.0.1:{server.server_address[1]}/0"
    finally:
        server.shutdown()
        server.server_close()


def _with_password(url: str) -> str:
    return url.replace("://postgres@", f"://postgres:{PG_PASSWORD}@", 1)


@pytest.fixture
def pg_urls(pg_databases: dict[str, str]) -> dict[str, str]:
    """The run's PostgreSQL databases, emptied, with a password in the URL."""
    from tests.conftest import PG_ADMIN_URL

    for url in pg_databases.values():
        db = url.rsplit("/", 1)[1]
        subprocess.run(
            [
                *("psql", PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + db, "-qc"),
                "DROP SCHEMA public CASCADE; CREATE SCHEMA public;",
            ],
            check=True,
            capture_output=True,
        )
    return {name: _with_password(url) for name, url in pg_databases.items()}


async def _migrate(url: str, migrations: Any) -> None:
    engine = make_engine(url)
    try:
        await upgrade_to_head(engine, migrations)
    finally:
        await engine.dispose()


def _auth_app(tmp_path: Path, *, database_url: str, redis_url: str) -> FastAPI:
    from auth_service.main import create_app

    settings = AuthSettings(
        **safe_production(database_url=database_url, redis_url=redis_url),
        redis_prefix=f"test:{secrets.token_hex(6)}:",
        key_dir=tmp_path / "keys",
    )
    return create_app(settings)


def _user_app(*, database_url: str, redis_url: str) -> FastAPI:
    from user_service.main import create_app

    values = safe_production(database_url=database_url, redis_url=redis_url)
    values.pop("webauthn_rp_id")
    values.pop("webauthn_origins")
    values.pop("totp_encryption_key")
    return create_app(UserSettings(**values, redis_prefix=f"test:{secrets.token_hex(6)}:"))


@pytest.mark.postgres
@pytest.mark.anyio
async def test_production_starts_on_migrated_postgres_real_redis_and_operator_keys(
    tmp_path: Path, pg_urls: dict[str, str], redis_with_password: str
) -> None:
    key = rotate(tmp_path / "keys", activate_after_seconds=0)
    await _migrate(pg_urls["auth"], AUTH)
    await _migrate(pg_urls["user"], USER)
    auth = _auth_app(tmp_path, database_url=pg_urls["auth"], redis_url=redis_with_password)
    user = _user_app(database_url=pg_urls["user"], redis_url=redis_with_password)
    async with LifespanManager(auth), LifespanManager(user):
        for app in (auth, user):
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app), base_url="https://idp"
            ) as client:
                ready = await client.get("/readyz")
                assert ready.status_code == 200, ready.text
                assert (await client.get("/docs")).status_code == 404
                assert (await client.get("/openapi.json")).status_code == 404
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(auth), base_url="https://idp"
        ) as client:
            jwks = (await client.get("/.well-known/jwks.json")).json()
    assert [k["kid"] for k in jwks["keys"]] == [key.kid]


@pytest.mark.postgres
@pytest.mark.anyio
@pytest.mark.parametrize("service", ["auth", "user"])
async def test_production_refuses_a_database_not_at_head_and_never_migrates_it(
    tmp_path: Path, pg_urls: dict[str, str], redis_with_password: str, service: str
) -> None:
    rotate(tmp_path / "keys", activate_after_seconds=0)
    url = pg_urls[service]
    app = (
        _auth_app(tmp_path, database_url=url, redis_url=redis_with_password)
        if service == "auth"
        else _user_app(database_url=url, redis_url=redis_with_password)
    )
    with pytest.raises(ProductionConfigError, match=rf"{service}_service\.migrate upgrade"):
        async with LifespanManager(app):
            pass
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
    finally:
        await engine.dispose()
    assert tables == [], "production must not create or upgrade the schema"


@pytest.mark.postgres
@pytest.mark.anyio
async def test_production_refuses_an_embedded_fake_redis(
    pg_urls: dict[str, str], fake_redis_url: str
) -> None:
    await _migrate(pg_urls["user"], USER)
    app = _user_app(database_url=pg_urls["user"], redis_url=fake_redis_url)
    with pytest.raises(ProductionConfigError, match="embedded or fake Redis"):
        async with LifespanManager(app):
            pass


@pytest.mark.postgres
@pytest.mark.anyio
async def test_production_auth_refuses_development_keys(
    tmp_path: Path, pg_urls: dict[str, str], redis_with_password: str
) -> None:
    KeyRing.load(tmp_path / "keys", generate_if_missing=True)  # what `make run` leaves behind
    await _migrate(pg_urls["auth"], AUTH)
    app = _auth_app(tmp_path, database_url=pg_urls["auth"], redis_url=redis_with_password)
    with pytest.raises(DevKeysRefused, match="development mode"):
        async with LifespanManager(app):
            pass


@pytest.mark.anyio
async def test_production_auth_refuses_to_generate_keys(
    tmp_path: Path, redis_with_password: str
) -> None:
    from auth_service.keys import NoSigningKeys

    app = _auth_app(
        tmp_path,
        database_url=f"postgresql+asyncpg://idp:{PG_PASSWORD}@127.0.0.1:1/none",
        redis_url=redis_with_password,
    )
    with pytest.raises(NoSigningKeys):
        async with LifespanManager(app):
            pass
    assert not (tmp_path / "keys" / "manifest.json").exists()


# --- CORS ----------------------------------------------------------------------------


def _preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }


@pytest.mark.anyio
async def test_cors_answers_only_configured_origins(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str]
) -> None:
    from tests.conftest import start_services

    allowed, other = "https://app.example.com", "https://evil.example.com"
    async for s in start_services(
        tmp_path=tmp_path,
        redis_prefix=redis_prefix,
        urls=sqlite_urls,
        auth={"cors_origins": allowed},
        user={"cors_origins": allowed},
    ):
        for client in (s.auth, s.user):
            ok = await client.options("/users/me", headers=_preflight(allowed))
            assert ok.status_code == 200
            assert ok.headers["access-control-allow-origin"] == allowed
            assert "access-control-allow-credentials" not in ok.headers
            refused = await client.options("/users/me", headers=_preflight(other))
            assert "access-control-allow-origin" not in refused.headers
            simple = await client.get("/healthz", headers={"Origin": other})
            assert "access-control-allow-origin" not in simple.headers


@pytest.mark.anyio
async def test_no_cors_headers_by_default(services: Any) -> None:
    for client in (services.auth, services.user):
        r = await client.get("/healthz", headers={"Origin": "https://app.example.com"})
        assert "access-control-allow-origin" not in r.headers
