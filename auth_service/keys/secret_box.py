"""Sealing secrets the service must read back (TOTP secrets) with AES-256-GCM.

A TOTP secret cannot be hashed like a password or a recovery code: checking
a code needs the secret itself. So it is encrypted at rest, with a key that
is not in the database: a stolen dump or backup alone yields no secret
(docs/ASVS.md, V6.5 / V11). The user id is the associated data, so a sealed
value copied to another account's row does not open there.

The key is `TOTP_ENCRYPTION_KEY` (32 bytes, base64url). Production refuses
to start without it (auth_service/config.py); development and tests make one
on first start in the key directory (`totp-secret.key`, 0600), as they make
their signing keys, so every replica sharing that directory reads the same.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import uuid
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from auth_service.keys.directory import locked

__all__ = [
    "DEV_KEY_FILE",
    "KEY_BYTES",
    "AeadBox",
    "SealedSecretUnreadable",
    "SecretBox",
    "decode_key",
    "dev_secret_key",
    "encode_key",
]

KEY_BYTES = 32  # AES-256
_NONCE_BYTES = 12  # GCM's 96-bit nonce, random per seal (2**-32 collision bound far off)
_VERSION = "v1"
_DOMAIN = b"idp:totp-secret:v1:"
DEV_KEY_FILE = "totp-secret.key"


class SealedSecretUnreadable(Exception):
    """A sealed value that this key cannot open (another key, another account, tampered)."""


def decode_key(text: str) -> bytes:
    """The raw key from its base64url text (padding optional).

    Raises:
        ValueError: not base64url, or not exactly 32 bytes. The message never
            repeats the value.
    """
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("expected base64url text") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"expected {KEY_BYTES} bytes, got {len(raw)}")
    return raw


def encode_key(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def dev_secret_key(key_dir: Path, file: str = DEV_KEY_FILE) -> bytes:
    """The development key `file` in `key_dir`, made on first use (never in production).

    Made under the key directory's writer lock, so replicas starting together
    agree on one key.
    """
    path = key_dir / file
    with locked(key_dir):
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(encode_key(secrets.token_bytes(KEY_BYTES)) + "\n")
        return decode_key(path.read_text())


class AeadBox:
    """AES-256-GCM with a purpose of its own: `v1.` + base64url(nonce || ciphertext).

    The domain goes into the associated data with the caller's binding, so a
    value sealed for one purpose (a TOTP secret) never opens as another (a
    signing key) even under the same key.
    """

    def __init__(self, key: bytes, domain: bytes) -> None:
        self._aead = AESGCM(key)
        self._domain = domain

    def seal(self, binding: bytes, plaintext: bytes) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, self._domain + binding)
        return f"{_VERSION}.{encode_key(nonce + sealed)}"

    def open(self, binding: bytes, sealed: str) -> bytes:
        """The plaintext of `sealed`.

        Raises:
            SealedSecretUnreadable: wrong key, wrong binding, or tampered.
        """
        version, _, body = sealed.partition(".")
        if version != _VERSION:
            raise SealedSecretUnreadable("unknown format")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return self._aead.decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self._domain + binding
            )
        except (InvalidTag, ValueError, binascii.Error):
            raise SealedSecretUnreadable("cannot open") from None


class SecretBox:
    """Seal and open short secrets, each bound to its owner's id."""

    def __init__(self, key: bytes) -> None:
        self._box = AeadBox(key, _DOMAIN)

    def seal(self, owner: uuid.UUID, plaintext: str) -> str:
        return self._box.seal(owner.bytes, plaintext.encode())

    def open(self, owner: uuid.UUID, sealed: str) -> str:
        """The plaintext of `sealed`.

        Raises:
            SealedSecretUnreadable: wrong key, wrong owner, or tampered.
        """
        return self._box.open(owner.bytes, sealed).decode()
