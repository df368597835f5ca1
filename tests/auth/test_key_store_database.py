"""KEY_STORE=database: signing keys in the auth database, sealed under KEY_ENCRYPTION_KEY.

Every test runs on a real SQLite file and on the real PostgreSQL (`db_urls`).
The store must keep the key directory's semantics (publish-then-sign, prune
only retired keys, emergency removal), never hold a private key in the clear,
and refuse a wrong key-encryption key or a tampered row.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from auth_service.config import AuthSettings
from auth_service.keys import DevKeysRefused, KeyRing, NoSigningKeys, SigningKey
from auth_service.keys.__main__ import main as cli_main
from auth_service.keys.database import DatabaseKeyStore, WrongKeyEncryptionKey
from auth_service.keys.directory import KeyEntry
from auth_service.keys.rotation import RotationPolicy, RotationSchedule
from auth_service.migrate import MIGRATIONS
from shared.access.key_revocation import revoked_kids_key
from shared.db.engine import make_engine
from shared.db.migrations import upgrade_to_head
from shared.tokens.verify import TokenVerifier
from tests.conftest import REDIS_URL, start_services

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0
ISSUER = "http://localhost:8000"


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingStore(DatabaseKeyStore):
    """The real store, counting how many keys it unsealed."""

    def __init__(self, engine: AsyncEngine, kek: bytes) -> None:
        super().__init__(engine, kek)
        self.unsealed: list[str] = []

    async def load(self, entry: KeyEntry) -> SigningKey:
        self.unsealed.append(entry.kid)
        return await super().load(entry)


@pytest.fixture
def kek() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
async def engine(db_urls: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(db_urls["auth"])
    await upgrade_to_head(engine, MIGRATIONS)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine, kek: bytes) -> DatabaseKeyStore:
    return DatabaseKeyStore(engine, kek)


def _claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "sub": str(uuid.uuid4()),
        "aud": "user-service",
        "exp": now + 600,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "client_id": "idp-web",
        "scope": "openid",
        "sid": "s1",
    }


async def _sealed(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT kid, private_key_sealed FROM signing_keys"))
        return {r.kid: r.private_key_sealed for r in rows}


def _kids(entries: Sequence[KeyEntry]) -> list[str]:
    return [e.kid for e in entries]


# --- the store's semantics ---------------------------------------------------------


async def test_a_rotated_key_is_published_at_once_and_signs_only_from_its_activation(
    store: DatabaseKeyStore,
) -> None:
    clock = FakeClock()
    first = await store.rotate(activate_after_seconds=0, clock=clock)
    ring = await KeyRing.open(store, generate_if_missing=False, clock=clock)
    assert ring.current_signing_key().kid == first.kid
    clock.now += 10
    second = await store.rotate(activate_after_seconds=60, clock=clock)
    assert second.activates_at == T0 + 70
    assert await ring.reload()
    assert {k["kid"] for k in ring.jwks()["keys"]} == {first.kid, second.kid}
    assert ring.current_signing_key().kid == first.kid, "published, not signing yet"
    clock.now = T0 + 70
    assert ring.current_signing_key().kid == second.kid
    # Times survive the round trip through the table exactly.
    listed = {e.kid: e for e in await store.entries()}
    assert listed[second.kid].created_at == T0 + 10
    assert listed[second.kid].activates_at == T0 + 70


async def test_prune_removes_only_keys_whose_successor_signed_long_enough(
    store: DatabaseKeyStore,
) -> None:
    clock = FakeClock()
    old = await store.rotate(activate_after_seconds=0, clock=clock)
    new = await store.rotate(activate_after_seconds=100, clock=clock)
    pending = await store.rotate(activate_after_seconds=1000, clock=clock)
    clock.now = T0 + 150  # `new` has signed for 50 s
    assert await store.prune(older_than_seconds=50, clock=clock) == []
    clock.now = T0 + 151
    assert await store.prune(older_than_seconds=50, clock=clock) == [old.kid]
    # The current key and a pending one never go.
    clock.now = T0 + 999
    assert await store.prune(older_than_seconds=0, clock=clock) == []
    assert sorted(_kids(await store.entries())) == sorted([new.kid, pending.kid])
    with pytest.raises(ValueError, match="older_than"):
        await store.prune(older_than_seconds=-1, clock=clock)


async def test_prune_of_an_empty_store_says_so(store: DatabaseKeyStore) -> None:
    with pytest.raises(NoSigningKeys):
        await store.prune(older_than_seconds=60)


async def test_removing_the_signing_key_adds_a_replacement_that_signs_at_once(
    store: DatabaseKeyStore, engine: AsyncEngine
) -> None:
    clock = FakeClock()
    first = await store.rotate(activate_after_seconds=0, clock=clock)
    clock.now += 10
    replacement = await store.remove(first.kid, clock=clock)
    assert replacement is not None
    assert replacement.activates_at == clock.now
    assert _kids(await store.entries()) == [replacement.kid]
    assert first.kid not in await _sealed(engine), "the compromised private key is gone"
    second = await store.rotate(activate_after_seconds=0, clock=clock)
    assert await store.remove(second.kid, clock=clock) is None, "another key is active"
    with pytest.raises(NoSigningKeys):
        await store.remove("no-such-kid", clock=clock)


async def test_writers_running_together_each_land_whole(store: DatabaseKeyStore) -> None:
    # Four rotations at once (the service's replicas and the CLI), then two
    # removals at once: every write lands, none is lost or half done.
    added = await asyncio.gather(*(store.rotate(activate_after_seconds=0) for _ in range(4)))
    assert sorted(_kids(await store.entries())) == sorted(k.kid for k in added)
    await asyncio.gather(store.remove(added[0].kid), store.remove(added[1].kid))
    assert sorted(_kids(await store.entries())) == sorted(k.kid for k in added[2:])


# --- sealing -------------------------------------------------------------------------


async def test_the_private_key_is_stored_sealed_never_in_the_clear(
    store: DatabaseKeyStore, engine: AsyncEngine
) -> None:
    key = await store.rotate(activate_after_seconds=0)
    sealed = (await _sealed(engine))[key.kid]
    der = key.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert "PRIVATE KEY" not in sealed
    assert base64.b64encode(der).decode()[:40] not in sealed
    raw = base64.urlsafe_b64decode(sealed.split(".", 1)[1] + "==")
    assert der[:64] not in raw, "the DER key is not in the sealed bytes either"
    # Loading it back gives the very key (its thumbprint is its kid).
    loaded = await store.load(next(e for e in await store.entries() if e.kid == key.kid))
    assert loaded.public_jwk == key.public_jwk


async def test_a_wrong_key_encryption_key_is_refused_at_start_and_before_any_write(
    store: DatabaseKeyStore, engine: AsyncEngine
) -> None:
    key = await store.rotate(activate_after_seconds=0)
    wrong = DatabaseKeyStore(engine, secrets.token_bytes(32))
    with pytest.raises(WrongKeyEncryptionKey, match="KEY_ENCRYPTION_KEY does not open") as caught:
        await KeyRing.open(wrong, generate_if_missing=False)
    assert key.kid in str(caught.value)
    with pytest.raises(WrongKeyEncryptionKey):
        await wrong.rotate(activate_after_seconds=0)
    with pytest.raises(WrongKeyEncryptionKey):
        await wrong.remove(key.kid)
    assert _kids(await store.entries()) == [key.kid], "nothing sealed under the wrong key"


async def test_a_sealed_key_moved_to_another_row_does_not_open(
    store: DatabaseKeyStore, engine: AsyncEngine
) -> None:
    a = await store.rotate(activate_after_seconds=0)
    b = await store.rotate(activate_after_seconds=0)
    sealed = await _sealed(engine)
    async with engine.begin() as conn:
        for kid, other in ((a.kid, b.kid), (b.kid, a.kid)):
            await conn.execute(
                sa.text("UPDATE signing_keys SET private_key_sealed = :s WHERE kid = :k"),
                {"s": sealed[other], "k": kid},
            )
    with pytest.raises(WrongKeyEncryptionKey):
        await KeyRing.open(store, generate_if_missing=False)


async def test_reseal_moves_every_key_to_a_new_key_encryption_key(
    store: DatabaseKeyStore, engine: AsyncEngine
) -> None:
    keys = [await store.rotate(activate_after_seconds=0) for _ in range(2)]
    new_kek = secrets.token_bytes(32)
    assert await store.reseal(new_kek) == 2
    ring = await KeyRing.open(DatabaseKeyStore(engine, new_kek), generate_if_missing=False)
    assert {k.kid for k in ring.keys} == {k.kid for k in keys}
    with pytest.raises(WrongKeyEncryptionKey):
        await KeyRing.open(store, generate_if_missing=False)  # the old KEK opens nothing now


# --- the ring over the database --------------------------------------------------------


async def test_a_reload_reads_kids_and_unseals_only_new_keys(
    engine: AsyncEngine, kek: bytes
) -> None:
    writer = DatabaseKeyStore(engine, kek)  # another replica, or the CLI
    await writer.rotate(activate_after_seconds=0)
    reader = CountingStore(engine, kek)
    ring = await KeyRing.open(reader, generate_if_missing=False)
    assert len(reader.unsealed) == 1
    assert not await ring.reload()
    assert not await ring.reload()
    assert len(reader.unsealed) == 1, "an unchanged table unseals nothing"
    new = await writer.rotate(activate_after_seconds=0)
    assert await ring.reload()
    assert reader.unsealed[1:] == [new.kid], "only the new key was unsealed"
    assert ring.current_signing_key().kid == new.kid


async def test_the_ring_adopts_a_key_rotated_by_another_process(
    engine: AsyncEngine, kek: bytes, db_urls: dict[str, str], tmp_path: Path
) -> None:
    store = DatabaseKeyStore(engine, kek)
    first = await store.rotate(activate_after_seconds=0)
    ring = await KeyRing.open(store, generate_if_missing=False)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KEY_STORE": "database",
        "DATABASE_URL": db_urls["auth"],
        "KEY_ENCRYPTION_KEY": base64.urlsafe_b64encode(kek).decode(),
        "KEY_DIR": str(tmp_path / "unused"),
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "auth_service.keys", "rotate", "--activate-after", "0"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "BEGIN" not in done.stdout + done.stderr, "no key material printed"
    assert await ring.reload()
    token = ring.sign(_claims())
    kid = jwt.get_unverified_header(token)["kid"]
    assert kid != first.kid
    assert f"added {kid}" in done.stdout
    verifier = TokenVerifier(
        key_source=ring, expected_issuer=ISSUER, expected_audience="user-service"
    )
    assert (await verifier.verify(token)).sub
    assert not (tmp_path / "unused").exists(), "the database store writes no key directory"


async def test_production_refuses_a_development_key_in_the_table(store: DatabaseKeyStore) -> None:
    dev = await store.add_first_key(clock=time.time, dev=True)
    assert dev is not None
    assert await store.add_first_key(clock=time.time, dev=True) is None, "only into an empty table"
    with pytest.raises(DevKeysRefused, match=dev.kid):
        await KeyRing.open(store, generate_if_missing=False, allow_dev_keys=False)


async def test_scheduled_rotation_on_the_database_store(
    store: DatabaseKeyStore, redis_prefix: str
) -> None:
    from redis.asyncio import Redis

    clock = FakeClock()
    first = await store.rotate(activate_after_seconds=0, clock=clock)
    policy = RotationPolicy(
        interval_seconds=100, activation_delay_seconds=20, retire_after_seconds=50
    )
    redis: Redis = Redis.from_url(REDIS_URL)
    try:
        replicas = [
            RotationSchedule(
                store, policy, redis=redis, lock_name=f"{redis_prefix}lock", clock=clock
            )
            for _ in range(3)
        ]
        clock.now = T0 + 80
        outcomes = await asyncio.gather(*(r.tick() for r in replicas))
        (added,) = [o.added for o in outcomes if o.added is not None]
        assert added.activates_at == T0 + 100
        clock.now = T0 + 151
        assert (await replicas[0].tick()).removed == (first.kid,)
    finally:
        await redis.aclose()


# --- the CLI and the service on the database store -------------------------------------


def test_the_cli_inits_rotates_lists_prunes_revokes_and_reseals_in_the_database(
    db_urls: dict[str, str],
    tmp_path: Path,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import redis as sync_redis

    kek = secrets.token_urlsafe(32)
    for name, value in {
        "KEY_STORE": "database",
        "DATABASE_URL": db_urls["auth"],
        "KEY_ENCRYPTION_KEY": kek,
        "KEY_DIR": str(tmp_path / "unused"),
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": redis_prefix,
    }.items():
        monkeypatch.setenv(name, value)
    # The first rollout's key (the Kubernetes Job): once, whatever the reruns.
    assert cli_main(["init"]) == 0
    first = capsys.readouterr().out.split()[1].rstrip(":")
    assert cli_main(["init"]) == 0
    assert "nothing added" in capsys.readouterr().out
    assert cli_main(["rotate", "--activate-after", "3600"]) == 0
    second = capsys.readouterr().out.split()[1].rstrip(":")
    assert cli_main(["list"]) == 0
    listing = capsys.readouterr().out
    assert f"{first}" in listing
    assert "current" in listing
    assert f"{second}" in listing
    assert "pending" in listing
    assert cli_main(["prune", "--older-than", "60"]) == 0
    assert "nothing to prune" in capsys.readouterr().out
    # Emergency: the current key goes, a replacement signs at once.
    assert cli_main(["revoke", "--", first]) == 0
    out = capsys.readouterr().out
    assert f"revoked {first}" in out
    assert "added " in out
    client = sync_redis.Redis.from_url(REDIS_URL)
    try:
        assert client.hexists(revoked_kids_key(redis_prefix), first)
    finally:
        client.close()
    assert cli_main(["list"]) == 0
    assert first not in capsys.readouterr().out
    # A wrong KEK: refused, and nothing added.
    monkeypatch.setenv("KEY_ENCRYPTION_KEY", secrets.token_urlsafe(32))
    assert cli_main(["rotate", "--activate-after", "0"]) == 1
    err = capsys.readouterr().err
    assert "WrongKeyEncryptionKey" in err
    assert kek not in err
    # Reseal under a new KEK, given through the environment only.
    monkeypatch.setenv("KEY_ENCRYPTION_KEY", kek)
    new = secrets.token_urlsafe(32)
    monkeypatch.setenv("NEW_KEY_ENCRYPTION_KEY", new)
    assert cli_main(["reseal"]) == 0
    assert "sealed 2 keys" in capsys.readouterr().out
    monkeypatch.setenv("KEY_ENCRYPTION_KEY", new)
    assert cli_main(["rotate", "--activate-after", "0"]) == 0
    assert not (tmp_path / "unused").exists()


async def test_the_services_sign_and_verify_with_keys_from_the_database(
    tmp_path: Path, redis_prefix: str, db_urls: dict[str, str]
) -> None:
    from tests.conftest import new_user

    settings = {"key_store": "database", "key_encryption_key": secrets.token_urlsafe(32)}
    async for s in start_services(
        tmp_path=tmp_path, redis_prefix=redis_prefix, urls=db_urls, auth=settings
    ):
        body = new_user()
        created = await s.auth.post("/users", json=body)
        assert created.status_code == 201, created.text
        tok = await s.auth.post(
            "/login", json={"email": body["email"], "password": body["password"]}
        )
        assert tok.status_code == 200, tok.text
        access = tok.json()["access_token"]
        jwks = (await s.auth.get("/.well-known/jwks.json")).json()
        kid = jwt.get_unverified_header(access)["kid"]
        assert [k["kid"] for k in jwks["keys"]] == [kid]
        got = await s.user.get(
            f"/users/{created.json()['id']}", headers={"Authorization": f"Bearer {access}"}
        )
        assert got.status_code == 200, got.text
    # Development made its key in the table, not in a key directory.
    assert not (tmp_path / "keys" / "manifest.json").exists()


async def test_a_service_started_with_another_key_encryption_key_refuses_to_start(
    tmp_path: Path, redis_prefix: str, db_urls: dict[str, str]
) -> None:
    first = {"key_store": "database", "key_encryption_key": secrets.token_urlsafe(32)}
    async for _ in start_services(
        tmp_path=tmp_path, redis_prefix=redis_prefix, urls=db_urls, auth=first
    ):
        pass  # makes the first (development) key, sealed under the first KEK
    other = secrets.token_urlsafe(32)
    with pytest.raises(WrongKeyEncryptionKey, match="KEY_ENCRYPTION_KEY does not open") as caught:
        async for _ in start_services(
            tmp_path=tmp_path,
            redis_prefix=redis_prefix,
            urls=db_urls,
            auth={**first, "key_encryption_key": other},
        ):
            pass
    assert other not in str(caught.value)
    assert first["key_encryption_key"] not in str(caught.value)


# --- settings ------------------------------------------------------------------------------


def _production(**overrides: Any) -> AuthSettings:
    values: dict[str, Any] = {
        "env": "production",
        "issuer": "https://idp.example.com",
        "docs_enabled": False,
        "database_url": "postgresql+asyncpg://idp:a-password@db.internal:5432/idp",
        "redis_url": "rediss://:a-long-random-secret@redis.internal:6379/0",
        "cors_origins": "https://app.example.com",
        "webauthn_rp_id": "idp.example.com",
        "webauthn_origins": "https://idp.example.com",
        "totp_encryption_key": secrets.token_urlsafe(32),
        "key_store": "database",
    }
    values.update(overrides)
    return AuthSettings(**values)


def test_production_needs_a_key_encryption_key_with_the_database_store() -> None:
    with pytest.raises(ValidationError, match="KEY_ENCRYPTION_KEY must be set"):
        _production()
    assert _production(key_encryption_key=secrets.token_urlsafe(32)).key_store == "database"
    # The directory store needs none.
    assert _production(key_store="directory").key_encryption_key.get_secret_value() == ""


def test_a_malformed_key_encryption_key_is_refused_without_echoing_it() -> None:
    bad = "not-a-key-" + secrets.token_hex(8)
    with pytest.raises(ValidationError, match="KEY_ENCRYPTION_KEY") as caught:
        _production(key_encryption_key=bad)
    assert bad not in str(caught.value)
