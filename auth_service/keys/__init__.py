"""Signing-key management: the key ring the auth service signs with (`ring`), and the
shared key directory with its rotation and pruning (`directory`)."""

from auth_service.keys.directory import (
    DevKeysRefused,
    NoSigningKeys,
    SigningKey,
    prune,
    rotate,
)
from auth_service.keys.ring import KeyRing

__all__ = ["DevKeysRefused", "KeyRing", "NoSigningKeys", "SigningKey", "prune", "rotate"]
