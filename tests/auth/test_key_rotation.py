"""Scheduled rotation (one replica under a Redis lock) and emergency revocation of a key."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from redis.asyncio import Redis

from auth_service.config import AuthSettings
from auth_service.keys import KeyRing, NoSigningKeys, rotate
from auth_service.keys.__main__ import main as cli_main
from auth_service.keys.directory import manifest_entries, remove
from auth_service.keys.rotation import RotationPolicy, RotationSchedule, rotation_due
from auth_service.keys.store import DirectoryStore
from shared.access.key_revocation import DenyRevokedKeys, RevokedKeys, revoked_kids_key
from shared.tokens.verify import KeysUnavailable, TokenRejected, TokenVerifier
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0
POLICY = RotationPolicy(interval_seconds=100, activation_delay_seconds=20, retire_after_seconds=50)


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


def _claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "http://localhost:8000",
        "sub": str(uuid.uuid4()),
        "aud": "user-service",
        "exp": now + 600,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "client_id": "idp-web",
        "scope": "openid",
        "sid": "s1",
        "roles": [],
        "amr": ["pwd"],
        "auth_time": now,
    }


def _verifier(source: Any) -> TokenVerifier:
    return TokenVerifier(
        key_source=source,
        expected_issuer="http://localhost:8000",
        expected_audience="user-service",
    )


def test_rotation_is_due_one_activation_delay_before_the_interval_ends(tmp_path: Path) -> None:
    clock = FakeClock()
    rotate(tmp_path, activate_after_seconds=0, clock=clock)
    assert not rotation_due(manifest_entries(tmp_path), POLICY, T0 + 79)
    # Published at 80, it signs at 100: the old key signed exactly the interval.
    assert rotation_due(manifest_entries(tmp_path), POLICY, T0 + 80)
    rotate(tmp_path, activate_after_seconds=20, clock=FakeClock(T0 + 80))
    assert not rotation_due(manifest_entries(tmp_path), POLICY, T0 + 90), (
        "a successor is pending already"
    )
    assert not rotation_due(manifest_entries(tmp_path / "empty"), POLICY, T0), (
        "production's first key is manual"
    )


async def test_one_replica_rotates_though_all_tick_at_once(
    tmp_path: Path, redis: Redis, redis_prefix: str
) -> None:
    clock = FakeClock()
    rotate(tmp_path, activate_after_seconds=0, clock=clock)
    clock.now = T0 + 85
    replicas = [
        RotationSchedule(
            DirectoryStore(tmp_path),
            POLICY,
            redis=redis,
            lock_name=f"{redis_prefix}lock",
            clock=clock,
        )
        for _ in range(4)
    ]
    outcomes = await asyncio.gather(*(r.tick() for r in replicas))
    assert sum(o.added is not None for o in outcomes) == 1
    assert len(manifest_entries(tmp_path)) == 2
    # The lock is released after the tick: the next one runs, and finds nothing due.
    again = await replicas[0].tick()
    assert again.locked
    assert again.added is None


async def test_a_scheduled_key_is_published_before_it_signs_and_the_old_one_retires(
    tmp_path: Path, redis: Redis, redis_prefix: str
) -> None:
    clock = FakeClock()
    rotate(tmp_path, activate_after_seconds=0, clock=clock)
    ring = KeyRing.load(tmp_path, generate_if_missing=False, clock=clock)
    old = ring.current_signing_key().kid
    schedule = RotationSchedule(
        DirectoryStore(tmp_path), POLICY, redis=redis, lock_name=f"{redis_prefix}lock", clock=clock
    )
    clock.now = T0 + 80
    new = (await schedule.tick()).added
    assert new is not None
    assert new.activates_at == T0 + 100
    assert ring.reload_if_changed()
    assert {k["kid"] for k in ring.jwks()["keys"]} == {old, new.kid}
    assert ring.current_signing_key().kid == old, "published, not yet signing"
    clock.now = T0 + 100
    assert ring.current_signing_key().kid == new.kid
    # The old key stays published while its tokens may live: retire_after = 50.
    clock.now = T0 + 150
    assert (await schedule.tick()).removed == ()
    clock.now = T0 + 151
    assert (await schedule.tick()).removed == (old,)
    ring.reload_if_changed()
    assert [k["kid"] for k in ring.jwks()["keys"]] == [new.kid]


def test_rotation_settings_refuse_a_key_that_signs_before_caches_know_it() -> None:
    with pytest.raises(ValueError, match="KEY_ACTIVATION_DELAY_SECONDS"):
        AuthSettings(
            key_rotation_interval_seconds=3600,
            key_activation_delay_seconds=20,
            key_reload_seconds=5,
            jwks_max_age_seconds=30,
        )
    with pytest.raises(ValueError, match="KEY_ROTATION_INTERVAL_SECONDS"):
        AuthSettings(key_rotation_interval_seconds=600, key_activation_delay_seconds=600)
    ok = AuthSettings(key_rotation_interval_seconds=86400, access_token_ttl_seconds=600)
    # Longest token (600) + the largest leeway a verifier may allow (60) + one reload (5).
    assert ok.key_retire_after_seconds == 665


def test_removing_the_signing_key_adds_a_replacement_that_signs_at_once(tmp_path: Path) -> None:
    clock = FakeClock()
    first = rotate(tmp_path, activate_after_seconds=0, clock=clock)
    clock.now += 10
    replacement = remove(tmp_path, first.kid, clock=clock)
    assert replacement is not None
    assert replacement.activates_at == clock.now
    assert [e.kid for e in manifest_entries(tmp_path)] == [replacement.kid]
    assert not (tmp_path / f"{first.kid}.pem").exists(), "the compromised private key is gone"
    # With another active key left, nothing is added.
    second = rotate(tmp_path, activate_after_seconds=0, clock=clock)
    assert remove(tmp_path, second.kid, clock=clock) is None
    with pytest.raises(NoSigningKeys):
        remove(tmp_path, "no-such-kid", clock=clock)


async def test_a_revoked_kid_is_neither_published_nor_used_nor_accepted(tmp_path: Path) -> None:
    clock = FakeClock(time.time())
    old = rotate(tmp_path, activate_after_seconds=0, clock=clock)
    ring = KeyRing.load(tmp_path, generate_if_missing=False, clock=clock)
    token = ring.sign(_claims())
    assert (await _verifier(ring).verify(token)).sub
    ring.set_revoked(frozenset({old.kid}))
    assert ring.jwks() == {"keys": []}
    with pytest.raises(NoSigningKeys):
        ring.sign(_claims())
    with pytest.raises(TokenRejected) as rejected:
        await _verifier(ring).verify(token)
    assert rejected.value.reason == "unknown_kid"
    # The directory's replacement is adopted by the next reload.
    replacement = remove(tmp_path, old.kid, clock=clock)
    assert replacement is not None
    assert ring.reload_if_changed()
    assert jwt.get_unverified_header(ring.sign(_claims()))["kid"] == replacement.kid


async def test_verifiers_refuse_a_revoked_kid_within_the_staleness_bound(
    tmp_path: Path, redis: Redis, redis_prefix: str
) -> None:
    rotate(tmp_path, activate_after_seconds=0)
    ring = KeyRing.load(tmp_path, generate_if_missing=False)
    token = ring.sign(_claims())
    kid = jwt.get_unverified_header(token)["kid"]
    seen: list[frozenset[str]] = []

    async def on_change(kids: frozenset[str]) -> None:
        seen.append(kids)

    revoked = RevokedKeys(redis, prefix=redis_prefix, on_change=on_change)
    verifier = _verifier(DenyRevokedKeys(ring, revoked))  # no poller: on demand only
    assert (await verifier.verify(token)).sub  # and now cached by the verifier
    await redis.hset(revoked_kids_key(redis_prefix), kid, "1")
    t0 = time.monotonic()
    reason = None
    while reason is None:
        try:
            await verifier.verify(token)
        except TokenRejected as exc:
            reason = exc.reason
        assert time.monotonic() - t0 < 1.0
        await asyncio.sleep(0.05)
    assert reason == "unknown_kid"
    await asyncio.sleep(0.05)
    assert seen == [frozenset({kid})]


async def test_verification_fails_closed_when_revoked_keys_cannot_be_read(tmp_path: Path) -> None:
    rotate(tmp_path, activate_after_seconds=0)
    ring = KeyRing.load(tmp_path, generate_if_missing=False)
    dead: Redis = Redis.from_url("redis://127.0.0.1:25999/0", socket_connect_timeout=0.5)
    try:
        verifier = _verifier(DenyRevokedKeys(ring, RevokedKeys(dead, prefix="x:")))
        with pytest.raises(KeysUnavailable):
            await verifier.verify(ring.sign(_claims()))
    finally:
        await dead.aclose()


def test_the_revoke_command_unpublishes_replaces_and_publishes_the_revocation(
    tmp_path: Path, redis_prefix: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import redis as sync_redis

    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("REDIS_PREFIX", redis_prefix)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    key = rotate(tmp_path, activate_after_seconds=0)
    assert cli_main(["revoke", "--key-dir", str(tmp_path), "--", key.kid]) == 0
    out = capsys.readouterr().out
    assert f"revoked {key.kid}" in out
    (entry,) = manifest_entries(tmp_path)
    assert entry.kid != key.kid
    assert f"added {entry.kid}" in out
    client = sync_redis.Redis.from_url(REDIS_URL)
    try:
        assert client.hexists(revoked_kids_key(redis_prefix), key.kid)
    finally:
        client.close()
    assert "BEGIN" not in out, "no key material on stdout"


async def test_a_frozen_redis_costs_queued_lookups_one_timeout_not_one_each() -> None:
    import socket

    # Accepts connections (the backlog) and never answers.
    frozen = socket.socket()
    frozen.bind(("127.0.0.1", 25998))
    frozen.listen(16)
    client: Redis = Redis.from_url("redis://127.0.0.1:25998/0", socket_timeout=0.5)
    try:
        revoked = RevokedKeys(client, prefix="x:")
        t0 = time.monotonic()
        results = await asyncio.gather(
            *(revoked.current() for _ in range(5)), return_exceptions=True
        )
        elapsed = time.monotonic() - t0
        assert all(isinstance(r, Exception) for r in results), results
        assert elapsed < 1.5, f"{elapsed:.1f}s: the lookups timed out one after another"
    finally:
        await client.aclose()
        frozen.close()
