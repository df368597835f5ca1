"""Signing-key management: the key ring the auth service signs with, rotation and pruning."""

from auth_service.keys.keyring import KeyRing, NoSigningKeys, SigningKey, prune, rotate

__all__ = ["KeyRing", "NoSigningKeys", "SigningKey", "prune", "rotate"]
