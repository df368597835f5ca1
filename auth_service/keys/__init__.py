"""Signing-key management: the key ring the auth service signs with, rotation and pruning."""

from auth_service.keys.keyring import (
    DevKeysRefused,
    KeyRing,
    NoSigningKeys,
    SigningKey,
    prune,
    rotate,
)

__all__ = ["DevKeysRefused", "KeyRing", "NoSigningKeys", "SigningKey", "prune", "rotate"]
