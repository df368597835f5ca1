"""Signing keys: the key directory, zero-downtime rotation, pruning, the CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from auth_service.keys import KeyRing, NoSigningKeys, SigningKey, prune, rotate
from auth_service.keys.__main__ import main as cli_main
from shared.tokens.jwk import rfc7638_thumbprint
from shared.tokens.verify import TokenRejected, TokenVerifier

REPO = Path(__file__).resolve().parents[2]
ISSUER = "http://localhost:8000"
AUDIENCE = "user-service"
T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "sub": str(uuid.uuid4()),
        "aud": AUDIENCE,
        "exp": now + 600,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "client_id": "idp-web",
        "scope": "openid profile",
        "sid": str(uuid.uuid4()),
    }
    return {**base, **overrides}


def verifier_for(ring: KeyRing) -> TokenVerifier:
    return TokenVerifier(key_source=ring, expected_issuer=ISSUER, expected_audience=AUDIENCE)


# --- loading and generating ----------------------------------------------------


def test_first_load_generates_an_active_key(key_dir: Path, clock: FakeClock) -> None:
    ring = KeyRing.load(key_dir, generate_if_missing=True, clock=clock)
    (key,) = ring.keys
    assert ring.current_signing_key() is key
    assert key.activates_at == key.created_at == T0
    assert key.private_key.key_size == 2048
    assert ring.key_age_seconds() == 0
    manifest = json.loads((key_dir / "manifest.json").read_text())
    # "dev": a key generated at start, which production refuses to use.
    assert manifest == {
        "keys": [
            {
                "kid": key.kid,
                "file": f"{key.kid}.pem",
                "created_at": T0,
                "activates_at": T0,
                "dev": True,
            }
        ]
    }


def test_key_files_are_private(key_dir: Path, clock: FakeClock) -> None:
    ring = KeyRing.load(key_dir, generate_if_missing=True, clock=clock)
    rotate(key_dir, activate_after_seconds=60, clock=clock)
    assert mode(key_dir) == 0o700
    assert mode(key_dir / "manifest.json") == 0o600
    for key in ring.keys:
        assert mode(key_dir / f"{key.kid}.pem") == 0o600
    # Atomic writes leave no temporary files behind.
    assert not [p for p in key_dir.iterdir() if p.name.endswith(".tmp")]


def test_existing_loose_directory_is_tightened(key_dir: Path, clock: FakeClock) -> None:
    key_dir.mkdir(mode=0o755)
    os.chmod(key_dir, 0o755)  # noqa: S103  the loose mode under test
    KeyRing.load(key_dir, generate_if_missing=True, clock=clock)
    assert mode(key_dir) == 0o700


def test_load_refuses_an_empty_directory_without_generation(key_dir: Path) -> None:
    with pytest.raises(NoSigningKeys):
        KeyRing.load(key_dir, generate_if_missing=False)
    assert not key_dir.exists()  # nothing was created either


def test_second_load_reuses_the_existing_key(key_dir: Path, clock: FakeClock) -> None:
    first = KeyRing.load(key_dir, generate_if_missing=True, clock=clock)
    second = KeyRing.load(key_dir, generate_if_missing=True, clock=clock)
    assert [k.kid for k in second.keys] == [k.kid for k in first.keys]


def test_kid_is_the_rfc7638_thumbprint_and_jwks_has_no_private_members(
    key_dir: Path, clock: FakeClock
) -> None:
    ring = KeyRing.load(key_dir, generate_if_missing=True, clock=clock)
    (jwk,) = ring.jwks()["keys"]
    assert jwk["kid"] == rfc7638_thumbprint(jwk) == ring.current_signing_key().kid
    assert jwk["use"] == "sig"
    assert jwk["alg"] == "RS256"
    assert set(jwk) == {"kty", "n", "e", "kid", "use", "alg"}  # no d, p, q, dp, dq, qi
    assert "PRIVATE" not in repr(ring.current_signing_key())


def test_manifest_naming_the_wrong_key_is_refused(key_dir: Path, clock: FakeClock) -> None:
    KeyRing.load(key_dir, generate_if_missing=True, clock=clock)
    manifest = json.loads((key_dir / "manifest.json").read_text())
    manifest["keys"][0]["kid"] = "not-the-thumbprint"
    (key_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="thumbprint"):
        KeyRing.load(key_dir, generate_if_missing=False)


@pytest.mark.parametrize("file", ["../outside.pem", "/etc/passwd", "sub/dir.pem", ".hidden"])
def test_manifest_file_names_cannot_escape_the_directory(key_dir: Path, file: str) -> None:
    key_dir.mkdir()
    entry = {"kid": "k", "file": file, "created_at": T0, "activates_at": T0}
    (key_dir / "manifest.json").write_text(json.dumps({"keys": [entry]}))
    with pytest.raises(ValueError, match="plain file name"):
        KeyRing.load(key_dir, generate_if_missing=False)


def test_a_directory_with_only_pending_keys_refuses_to_start(key_dir: Path) -> None:
    rotate(key_dir, activate_after_seconds=600, clock=FakeClock())
    with pytest.raises(NoSigningKeys, match="active"):
        KeyRing.load(key_dir, generate_if_missing=False, clock=FakeClock())


# --- signing and verifying --------------------------------------------------------


@pytest.mark.anyio
async def test_sign_then_verify_through_the_key_ring(key_dir: Path) -> None:
    ring = KeyRing.load(key_dir, generate_if_missing=True)
    token = ring.sign(claims())
    assert jwt.get_unverified_header(token) == {
        "alg": "RS256",
        "typ": "at+jwt",
        "kid": ring.current_signing_key().kid,
    }
    result = await verifier_for(ring).verify(token)
    assert result.client_id == "idp-web"


def test_sign_uses_the_cached_key_object(key_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ring = KeyRing.load(key_dir, generate_if_missing=True)

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("PEM parsed on the signing path")

    monkeypatch.setattr(serialization, "load_pem_private_key", no_parsing)
    for _ in range(3):
        ring.sign(claims())


# --- rotation -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_rotation_publishes_before_use(key_dir: Path, clock: FakeClock) -> None:
    ring = KeyRing.load(key_dir, generate_if_missing=True, clock=clock)
    old = ring.current_signing_key()
    new = rotate(key_dir, activate_after_seconds=60, clock=clock)
    assert isinstance(new, SigningKey)
    assert ring.reload_if_changed()

    # Published at once, so every JWKS cache can learn it ...
    assert {k["kid"] for k in ring.jwks()["keys"]} == {old.kid, new.kid}
    assert await ring.get_key(new.kid) is not None
    # ... but not used until it activates.
    assert ring.current_signing_key().kid == old.kid
    assert jwt.get_unverified_header(ring.sign(claims()))["kid"] == old.kid
    clock.now = T0 + 59.9
    assert ring.current_signing_key().kid == old.kid
    clock.now = T0 + 60
    assert ring.current_signing_key().kid == new.kid
    assert jwt.get_unverified_header(ring.sign(claims()))["kid"] == new.kid


@pytest.mark.anyio
async def test_tokens_of_the_previous_key_still_verify_after_rotation(
    key_dir: Path, clock: FakeClock
) -> None:
    ring = KeyRing.load(key_dir, generate_if_missing=True, clock=clock)
    before = ring.sign(claims())
    rotate(key_dir, activate_after_seconds=0, clock=clock)
    ring.reload_if_changed()
    after = ring.sign(claims())
    assert jwt.get_unverified_header(before)["kid"] != jwt.get_unverified_header(after)["kid"]
    verifier = verifier_for(ring)
    await verifier.verify(before)
    await verifier.verify(after)


def test_rotate_refuses_weak_keys_and_negative_delays(key_dir: Path) -> None:
    with pytest.raises(ValueError, match="2048"):
        rotate(key_dir, activate_after_seconds=60, bits=1024)
    with pytest.raises(ValueError, match="activate_after"):
        rotate(key_dir, activate_after_seconds=-1)


def test_rotate_with_larger_keys(key_dir: Path, clock: FakeClock) -> None:
    key = rotate(key_dir, activate_after_seconds=0, clock=clock, bits=3072)
    assert key.private_key.key_size == 3072
    assert KeyRing.load(key_dir, generate_if_missing=False, clock=clock).keys == (key,)


# --- reload ---------------------------------------------------------------------------


def test_reload_is_a_no_op_when_nothing_changed(key_dir: Path, clock: FakeClock) -> None:
    ring = KeyRing.load(key_dir, generate_if_missing=True, clock=clock)
    assert not ring.reload_if_changed()
    assert not ring.reload_if_changed()


def test_reload_parses_only_new_keys(
    key_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = KeyRing.load(key_dir, generate_if_missing=True, clock=clock)
    first = ring.current_signing_key()
    rotate(key_dir, activate_after_seconds=60, clock=clock)
    parsed: list[bytes] = []
    real = serialization.load_pem_private_key

    def counting(data: bytes, password: None) -> Any:
        parsed.append(data)
        return real(data, password)

    monkeypatch.setattr(serialization, "load_pem_private_key", counting)
    assert ring.reload_if_changed()
    assert len(parsed) == 1
    assert first in ring.keys  # the same object, not a re-parsed copy


@pytest.mark.anyio
async def test_a_broken_manifest_keeps_the_loaded_keys(key_dir: Path, clock: FakeClock) -> None:
    ring = KeyRing.load(key_dir, generate_if_missing=True, clock=clock)
    good = (key_dir / "manifest.json").read_bytes()
    (key_dir / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError):  # noqa: PT011  json's own message
        ring.reload_if_changed()
    token = ring.sign(claims())  # still signing, still verifying
    await verifier_for(ring).verify(token)
    (key_dir / "manifest.json").write_bytes(good)
    # Readable again, and listing the keys already loaded: nothing to adopt.
    assert not ring.reload_if_changed()
    rotate(key_dir, activate_after_seconds=0, clock=clock)
    assert ring.reload_if_changed()


def test_a_manifest_left_with_only_pending_keys_is_not_adopted(
    key_dir: Path, clock: FakeClock
) -> None:
    ring = KeyRing.load(key_dir, generate_if_missing=True, clock=clock)
    current = ring.current_signing_key()
    other = key_dir.parent / "other"
    pending = rotate(other, activate_after_seconds=600, clock=clock)
    (key_dir / f"{pending.kid}.pem").write_bytes((other / f"{pending.kid}.pem").read_bytes())
    (key_dir / "manifest.json").write_bytes((other / "manifest.json").read_bytes())
    with pytest.raises(NoSigningKeys):
        ring.reload_if_changed()
    assert ring.current_signing_key() is current
    assert [k.kid for k in ring.keys] == [current.kid]


# --- pruning --------------------------------------------------------------------------


def test_prune_removes_a_retired_key_only_after_its_tokens_expired(
    key_dir: Path, clock: FakeClock
) -> None:
    old = KeyRing.load(key_dir, generate_if_missing=True, clock=clock).current_signing_key()
    clock.now = T0 + 1000
    new = rotate(key_dir, activate_after_seconds=60, clock=clock)  # signs from T0 + 1060
    # Before the successor activates, the old key is still the signer.
    assert prune(key_dir, older_than_seconds=0, clock=clock) == []
    # The successor has signed for 600 s: tokens of the old key may still be live.
    clock.now = T0 + 1060 + 600
    assert prune(key_dir, older_than_seconds=600, clock=clock) == []
    clock.now = T0 + 1060 + 601
    assert prune(key_dir, older_than_seconds=600, clock=clock) == [old.kid]
    assert not (key_dir / f"{old.kid}.pem").exists()
    ring = KeyRing.load(key_dir, generate_if_missing=False, clock=clock)
    assert [k.kid for k in ring.keys] == [new.kid]


def test_prune_never_removes_the_current_or_a_pending_key(key_dir: Path, clock: FakeClock) -> None:
    current = KeyRing.load(key_dir, generate_if_missing=True, clock=clock).current_signing_key()
    rotate(key_dir, activate_after_seconds=3600, clock=clock)
    clock.now = T0 + 3599
    assert prune(key_dir, older_than_seconds=0, clock=clock) == []
    ring = KeyRing.load(key_dir, generate_if_missing=False, clock=clock)
    assert ring.current_signing_key().kid == current.kid
    assert len(ring.keys) == 2


def test_prune_keeps_the_chain_of_recent_keys(key_dir: Path, clock: FakeClock) -> None:
    k1 = KeyRing.load(key_dir, generate_if_missing=True, clock=clock).current_signing_key()
    clock.now = T0 + 100
    k2 = rotate(key_dir, activate_after_seconds=0, clock=clock)
    clock.now = T0 + 10_000
    k3 = rotate(key_dir, activate_after_seconds=0, clock=clock)
    clock.now = T0 + 10_100
    # k1's successor (k2) has been active long enough; k2's successor (k3) has not.
    assert prune(key_dir, older_than_seconds=600, clock=clock) == [k1.kid]
    kids = {k.kid for k in KeyRing.load(key_dir, generate_if_missing=False, clock=clock).keys}
    assert kids == {k2.kid, k3.kid}


def test_replica_picks_up_a_prune(key_dir: Path, clock: FakeClock) -> None:
    ring = KeyRing.load(key_dir, generate_if_missing=True, clock=clock)
    old = ring.current_signing_key()
    rotate(key_dir, activate_after_seconds=0, clock=clock)
    clock.now = T0 + 1000
    assert prune(key_dir, older_than_seconds=600, clock=clock) == [old.kid]
    assert ring.reload_if_changed()
    assert old.kid not in {k["kid"] for k in ring.jwks()["keys"]}


def test_prune_of_an_empty_directory_is_an_error(key_dir: Path) -> None:
    with pytest.raises(NoSigningKeys):
        prune(key_dir, older_than_seconds=600)


# --- CLI ------------------------------------------------------------------------------


def run_cli(*args: str, key_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KEY_DIR": str(key_dir)}
    return subprocess.run(
        [sys.executable, "-m", "auth_service.keys", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_rotate_list_prune(key_dir: Path) -> None:
    past = FakeClock(time.time() - 10_000)
    first = KeyRing.load(key_dir, generate_if_missing=True, clock=past).current_signing_key()

    rotated = run_cli("rotate", "--activate-after", "0", key_dir=key_dir)
    assert rotated.returncode == 0, rotated.stderr
    (new_kid,) = {k.kid for k in KeyRing.load(key_dir, generate_if_missing=False).keys} - {
        first.kid
    }
    assert new_kid in rotated.stdout

    listed = run_cli("list", key_dir=key_dir)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert any(new_kid in line and "current" in line for line in lines)
    assert any(first.kid in line and "retired" in line for line in lines)

    for result in (rotated, listed):
        assert "PRIVATE KEY" not in result.stdout + result.stderr


def test_cli_key_dir_option_before_or_after_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    KeyRing.load(a, generate_if_missing=True)
    KeyRing.load(b, generate_if_missing=True)
    assert cli_main(["--key-dir", str(a), "list"]) == 0
    assert cli_main(["list", "--key-dir", str(b)]) == 0
    out = capsys.readouterr().out
    for path in (a, b):
        (kid,) = [k.kid for k in KeyRing.load(path, generate_if_missing=False).keys]
        assert kid in out


def test_cli_prune_removes_expired_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_dir = tmp_path / "keys"
    past = FakeClock(time.time() - 10_000)
    old = KeyRing.load(key_dir, generate_if_missing=True, clock=past).current_signing_key()
    rotate(key_dir, activate_after_seconds=0, clock=past)
    assert cli_main(["prune", "--older-than", "600", "--key-dir", str(key_dir)]) == 0
    assert f"removed {old.kid}" in capsys.readouterr().out


def test_cli_prune_keeps_keys_whose_tokens_may_be_live(
    key_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    KeyRing.load(key_dir, generate_if_missing=True)
    rotate(key_dir, activate_after_seconds=0)
    assert cli_main(["prune", "--older-than", "600", "--key-dir", str(key_dir)]) == 0
    assert "nothing to prune" in capsys.readouterr().out
    assert len(KeyRing.load(key_dir, generate_if_missing=False).keys) == 2


def test_cli_reports_missing_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEY_DIR", str(tmp_path / "empty"))
    assert cli_main(["list"]) == 1
    assert "no signing keys" in capsys.readouterr().err


def test_cli_rejects_weak_key_sizes(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        cli_main(["rotate", "--bits", "1024", "--key-dir", str(tmp_path)])


@pytest.mark.anyio
async def test_tokens_of_a_pruned_key_are_rejected(key_dir: Path, clock: FakeClock) -> None:
    ring = KeyRing.load(key_dir, generate_if_missing=True, clock=clock)
    token = ring.sign(claims())
    rotate(key_dir, activate_after_seconds=0, clock=clock)
    clock.now = T0 + 1000
    prune(key_dir, older_than_seconds=600, clock=clock)
    ring.reload_if_changed()
    with pytest.raises(TokenRejected) as info:
        await verifier_for(ring).verify(token)
    assert info.value.reason == "unknown_kid"


def test_prune_of_a_missing_directory_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(NoSigningKeys):
        prune(tmp_path / "nowhere", older_than_seconds=600)
    assert not (tmp_path / "nowhere").exists()


def test_published_jwk_cannot_be_mutated_through_the_ring(key_dir: Path) -> None:
    ring = KeyRing.load(key_dir, generate_if_missing=True)
    ring.jwks()["keys"][0]["kid"] = "tampered"
    assert ring.jwks()["keys"][0]["kid"] == ring.current_signing_key().kid
