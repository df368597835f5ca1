"""The box TOTP secrets are sealed in: AES-256-GCM, bound to the owner's id."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path

import pytest

from auth_service.keys.secret_box import (
    KEY_BYTES,
    SealedSecretUnreadable,
    SecretBox,
    decode_key,
    dev_secret_key,
    encode_key,
)


def test_a_sealed_secret_opens_for_its_owner_only() -> None:
    box = SecretBox(secrets.token_bytes(KEY_BYTES))
    alice, bob = uuid.uuid4(), uuid.uuid4()
    sealed = box.seal(alice, "JBSWY3DPEHPK3PXP")
    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert box.open(alice, sealed) == "JBSWY3DPEHPK3PXP"
    with pytest.raises(SealedSecretUnreadable):
        box.open(bob, sealed)  # copied to another account's row


def test_each_seal_is_fresh() -> None:
    box = SecretBox(secrets.token_bytes(KEY_BYTES))
    owner = uuid.uuid4()
    assert box.seal(owner, "A" * 32) != box.seal(owner, "A" * 32)  # random nonce


def test_another_key_or_a_flipped_bit_does_not_open() -> None:
    owner = uuid.uuid4()
    sealed = SecretBox(secrets.token_bytes(KEY_BYTES)).seal(owner, "SECRET")
    with pytest.raises(SealedSecretUnreadable):
        SecretBox(secrets.token_bytes(KEY_BYTES)).open(owner, sealed)
    box = SecretBox(secrets.token_bytes(KEY_BYTES))
    good = box.seal(owner, "SECRET")
    tampered = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]
    for bad in (tampered, "v2." + good[3:], "v1.%%%", ""):
        with pytest.raises(SealedSecretUnreadable):
            box.open(owner, bad)


def test_keys_are_32_bytes_of_base64url() -> None:
    raw = secrets.token_bytes(KEY_BYTES)
    assert decode_key(encode_key(raw)) == raw
    assert decode_key(secrets.token_urlsafe(32)) != b""
    for bad in ("", "short", secrets.token_urlsafe(16), "!" * 43):
        with pytest.raises(ValueError, match="expected"):
            decode_key(bad)


def test_the_development_key_is_made_once_and_private(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    first = dev_secret_key(key_dir)
    assert len(first) == KEY_BYTES
    assert dev_secret_key(key_dir) == first  # every replica reads the same
    assert (key_dir / "totp-secret.key").stat().st_mode & 0o777 == 0o600
