"""`KeyStore`: where the signing keys live, as the ring, the rotation and the CLI see it.

Two stores keep the same semantics (docs/OPERATIONS.md, "Where the keys live"):

- `DirectoryStore` (KEY_STORE=directory): the key directory of
  `auth_service.keys.directory`, shared by replicas on one volume;
- `DatabaseKeyStore` (KEY_STORE=database, `auth_service.keys.database`): the
  `signing_keys` table of the auth database, private keys sealed under
  KEY_ENCRYPTION_KEY; no shared volume needed.

Both: publish-then-sign (a key signs from `activates_at`), prune only keys
whose successor has signed for long enough (`prunable`), remove a key at once
in an emergency (with a replacement when nothing else could sign). Writers are
serialised by the store; a reader sees the old state or the new, never a torn
one. `entries()` is cheap (no private key is parsed or unsealed): the ring
calls it every KEY_RELOAD_SECONDS and loads only the keys it has not seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from auth_service.keys import directory
from auth_service.keys.directory import Clock, KeyEntry, ManifestEntry, SigningKey, prunable
from shared.tokens.jwk import MIN_RSA_BITS

__all__ = ["DirectoryStore", "KeyEntry", "KeyStore", "prunable", "refuse_dev_keys"]


class KeyStore(Protocol):
    """The keys of one deployment; see the module docstring."""

    @property
    def where(self) -> str:
        """Where the keys are, for messages (never a secret)."""
        ...

    async def entries(self) -> Sequence[KeyEntry]:
        """Every key's kid and times, in insertion order; nothing is unsealed."""
        ...

    async def load(self, entry: KeyEntry) -> SigningKey:
        """The private key of one listed entry, checked against its kid."""
        ...

    async def add_first_key(self, *, clock: Clock, dev: bool) -> SigningKey | None:
        """A first key, active at once, only when the store has none (else None).

        `dev`: made by a development start, which production refuses to use;
        False for the operator's `init` (the first rollout's key).
        """
        ...

    async def rotate(
        self, *, activate_after_seconds: int, clock: Clock = time.time, bits: int = 2048
    ) -> SigningKey:
        """Add a key published now that signs `activate_after_seconds` later."""
        ...

    async def prune(self, *, older_than_seconds: int, clock: Clock = time.time) -> list[str]:
        """Remove keys whose successor has signed for longer than `older_than_seconds`."""
        ...

    async def remove(
        self, kid: str, *, replacement_bits: int = 2048, clock: Clock = time.time
    ) -> SigningKey | None:
        """Emergency: remove `kid` now; returns a replacement when none other is active."""
        ...


def refuse_dev_keys(where: str, entries: Sequence[KeyEntry]) -> None:
    dev = [e.kid for e in entries if e.dev]
    if dev:
        raise directory.DevKeysRefused(
            f"{where} holds signing keys generated in development mode ({', '.join(dev)}); "
            "production needs keys made with `python -m auth_service.keys rotate`, not keys "
            "a development start generated"
        )


class DirectoryStore:
    """The key directory as a `KeyStore`: its file work runs in a worker thread."""

    def __init__(self, key_dir: Path) -> None:
        self.key_dir = key_dir
        # (stamp, entries) in one attribute: reads run in worker threads, and
        # a stamp must never be paired with another read's entries.
        self._cache: tuple[tuple[int, int, int], list[ManifestEntry]] | None = None

    @property
    def where(self) -> str:
        return str(self.key_dir)

    def entries_now(self) -> list[ManifestEntry]:
        """The manifest's entries; one stat when it has not changed since the last read."""
        try:
            stamp = directory.manifest_stamp(self.key_dir)
        except FileNotFoundError:
            self._cache = None
            return []
        cache = self._cache
        if cache is None or cache[0] != stamp:
            # The stamp before the read: a change during it is seen next time.
            cache = (stamp, directory.manifest_entries(self.key_dir))
            self._cache = cache
        return list(cache[1])

    def load_now(self, entry: KeyEntry) -> SigningKey:
        if not isinstance(entry, ManifestEntry):
            raise TypeError(f"expected a manifest entry, got {type(entry).__name__}")
        return directory.load_key(self.key_dir, entry)

    async def entries(self) -> Sequence[KeyEntry]:
        return await asyncio.to_thread(self.entries_now)

    async def load(self, entry: KeyEntry) -> SigningKey:
        return await asyncio.to_thread(self.load_now, entry)

    def add_first_key_now(self, *, clock: Clock, dev: bool) -> SigningKey | None:
        with directory.locked(self.key_dir):
            # Another replica may have won the race for the lock.
            if directory.manifest_entries(self.key_dir):
                return None
            now = clock()
            return directory.add_key(
                self.key_dir,
                directory.generate_key(MIN_RSA_BITS),
                created_at=now,
                activates_at=now,
                dev=dev,
            )

    async def add_first_key(self, *, clock: Clock, dev: bool) -> SigningKey | None:
        return await asyncio.to_thread(self.add_first_key_now, clock=clock, dev=dev)

    async def rotate(
        self, *, activate_after_seconds: int, clock: Clock = time.time, bits: int = 2048
    ) -> SigningKey:
        return await asyncio.to_thread(
            directory.rotate,
            self.key_dir,
            activate_after_seconds=activate_after_seconds,
            clock=clock,
            bits=bits,
        )

    async def prune(self, *, older_than_seconds: int, clock: Clock = time.time) -> list[str]:
        return await asyncio.to_thread(
            directory.prune, self.key_dir, older_than_seconds=older_than_seconds, clock=clock
        )

    async def remove(
        self, kid: str, *, replacement_bits: int = 2048, clock: Clock = time.time
    ) -> SigningKey | None:
        return await asyncio.to_thread(
            directory.remove, self.key_dir, kid, replacement_bits=replacement_bits, clock=clock
        )
