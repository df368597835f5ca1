"""Signing keys in the auth database (KEY_STORE=database), sealed under a key-encryption key.

Why: on Kubernetes a key directory every replica can write needs a
ReadWriteMany volume, which many clusters lack; a read-only Secret cannot be
rotated from inside. The auth database is already shared, transactional and
backed up, so the keys live in its `signing_keys` table
(auth_service/models/signing_key.py) and scheduled rotation works with any
number of replicas.

Sealing: each private key (PKCS#8 DER) is AES-256-GCM encrypted under
KEY_ENCRYPTION_KEY (the KEK, 32 bytes, never in the database), with the kid
in the associated data, so a database dump or backup alone yields no key and
a sealed value moved to another row does not open (the kid is also the
thumbprint of the public key: a row whose key does not match it is refused
as well). A KEK that cannot open the rows is refused with
`WrongKeyEncryptionKey`, at start and before any write, so one table never
holds keys sealed under two KEKs.

Writers (rotate, prune, remove, reseal) run in one transaction each, and
serialise: on PostgreSQL under a transaction-scoped advisory lock (a row lock
cannot guard an empty table), on SQLite by taking the single writer's lock
before the first read. Readers see the table before or after a write,
never half of one. Every call is async on the service's own engine: nothing
blocks the event loop but the RSA key generation, which runs in a thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from auth_service.keys.directory import (
    Clock,
    KeyEntry,
    NoSigningKeys,
    SigningKey,
    generate_key,
    prunable,
    signing_key,
    stored_signing_key,
)
from auth_service.keys.secret_box import AeadBox, SealedSecretUnreadable
from auth_service.models.signing_key import SigningKeyRow
from shared.tokens.jwk import MIN_RSA_BITS

__all__ = ["DatabaseKeyStore", "StoredKey", "WrongKeyEncryptionKey"]

_TABLE: sa.Table = SigningKeyRow.__table__  # type: ignore[attr-defined]
_DOMAIN = b"idp:signing-key:v1:"
# pg_advisory_xact_lock's key for writers of this table: a fixed 64-bit
# number of our own (the first 8 bytes of sha256(b"idp:signing_keys"), signed).
_PG_LOCK_ID = 0x20E90D09623CA776


class WrongKeyEncryptionKey(NoSigningKeys):
    """KEY_ENCRYPTION_KEY does not open the stored keys (another key, or altered rows)."""


@dataclass(frozen=True)
class StoredKey:
    """One row's clear columns (`KeyEntry`): what the ring reads every reload."""

    kid: str
    created_at: float
    activates_at: float
    dev: bool = False


def _seconds(value: datetime) -> float:
    # SQLite hands back naive datetimes; every value written here is UTC.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _instant(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class DatabaseKeyStore:
    """The `signing_keys` table as a `KeyStore` (auth_service/keys/store.py)."""

    def __init__(self, engine: AsyncEngine, kek: bytes) -> None:
        self._engine = engine
        self._box = AeadBox(kek, _DOMAIN)

    @property
    def where(self) -> str:
        return "the signing_keys table of the auth database"

    # --- reading ---------------------------------------------------------------

    async def entries(self) -> Sequence[KeyEntry]:
        """Kids and times of every key, oldest first; no sealed column is read."""
        query = sa.select(
            _TABLE.c.kid, _TABLE.c.created_at, _TABLE.c.activates_at, _TABLE.c.dev
        ).order_by(_TABLE.c.created_at, _TABLE.c.kid)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            StoredKey(r.kid, _seconds(r.created_at), _seconds(r.activates_at), r.dev) for r in rows
        ]

    async def load(self, entry: KeyEntry) -> SigningKey:
        """Unseal one key.

        Raises:
            WrongKeyEncryptionKey: the KEK cannot open it, or it is not the key its kid names.
            NoSigningKeys: the row is gone (pruned or removed since it was listed).
        """
        query = sa.select(_TABLE.c.private_key_sealed).where(_TABLE.c.kid == entry.kid)
        async with self._engine.connect() as conn:
            sealed = (await conn.execute(query)).scalar_one_or_none()
        if sealed is None:
            raise NoSigningKeys(f"signing key {entry.kid} left {self.where}")
        return self._unseal(entry, sealed)

    def _unseal(self, entry: KeyEntry, sealed: str) -> SigningKey:
        try:
            der = self._box.open(entry.kid.encode(), sealed)
        except SealedSecretUnreadable:
            # Never the key in the message: only which row did not open.
            raise WrongKeyEncryptionKey(
                f"KEY_ENCRYPTION_KEY does not open signing key {entry.kid} in {self.where}: "
                "it is not the key the rows were sealed with (or the row was altered)"
            ) from None
        private_key = serialization.load_der_private_key(der, password=None)
        try:
            return stored_signing_key(private_key, entry.kid, entry.created_at, entry.activates_at)
        except ValueError as exc:
            raise WrongKeyEncryptionKey(f"signing key {entry.kid}: {exc}") from None

    # --- writing ---------------------------------------------------------------

    async def _begin_writer(self, conn: AsyncConnection) -> list[StoredKey]:
        """Serialise writers, check the KEK, and return the rows as they are now."""
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_ID)))
        else:
            # SQLite: a write first takes the database's one writer lock for
            # this transaction, so the read below cannot go stale before our write.
            await conn.execute(sa.update(_TABLE).where(sa.false()).values(dev=False))
        rows = (
            await conn.execute(sa.select(_TABLE).order_by(_TABLE.c.created_at, _TABLE.c.kid))
        ).all()
        entries = [
            StoredKey(r.kid, _seconds(r.created_at), _seconds(r.activates_at), r.dev) for r in rows
        ]
        if rows:
            # The newest row must open under our KEK before we seal anything
            # new: a wrong KEK would otherwise leave the table unreadable as a
            # whole to the replicas that hold the right one.
            self._unseal(entries[-1], rows[-1].private_key_sealed)
        return entries

    def _row(self, key: SigningKey, private_key: RSAPrivateKey, *, dev: bool) -> dict[str, object]:
        der = private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),  # sealed below instead
        )
        return {
            "kid": key.kid,
            "private_key_sealed": self._box.seal(key.kid.encode(), der),
            "created_at": _instant(key.created_at),
            "activates_at": _instant(key.activates_at),
            "dev": dev,
        }

    async def _insert(
        self,
        conn: AsyncConnection,
        private_key: RSAPrivateKey,
        *,
        created_at: float,
        activates_at: float,
        dev: bool = False,
    ) -> SigningKey:
        key = signing_key(private_key, created_at, activates_at)
        await conn.execute(sa.insert(_TABLE).values(**self._row(key, private_key, dev=dev)))
        return key

    async def add_first_key(self, *, clock: Clock, dev: bool) -> SigningKey | None:
        """A first key, active at once, only into an empty table (`KeyStore.add_first_key`)."""
        private_key = await asyncio.to_thread(generate_key, MIN_RSA_BITS)
        async with self._engine.begin() as conn:
            if await self._begin_writer(conn):
                return None  # another replica, or an earlier `init`, made the first key
            now = clock()
            return await self._insert(conn, private_key, created_at=now, activates_at=now, dev=dev)

    async def rotate(
        self, *, activate_after_seconds: int, clock: Clock = time.time, bits: int = 2048
    ) -> SigningKey:
        """Add a key published now that signs later (`directory.rotate`'s contract)."""
        if activate_after_seconds < 0:
            raise ValueError(f"expected activate_after_seconds >= 0, got {activate_after_seconds}")
        private_key = await asyncio.to_thread(generate_key, bits)  # slow; outside the lock
        async with self._engine.begin() as conn:
            await self._begin_writer(conn)
            now = clock()
            return await self._insert(
                conn, private_key, created_at=now, activates_at=now + activate_after_seconds
            )

    async def prune(self, *, older_than_seconds: int, clock: Clock = time.time) -> list[str]:
        """Remove retired keys whose tokens have all expired (`directory.prune`'s contract)."""
        if older_than_seconds < 0:
            raise ValueError(f"expected older_than_seconds >= 0, got {older_than_seconds}")
        async with self._engine.begin() as conn:
            entries = await self._begin_writer(conn)
            if not entries:
                raise NoSigningKeys(f"no signing keys in {self.where}")
            doomed = prunable(entries, now=clock(), older_than_seconds=older_than_seconds)
            if doomed:
                await conn.execute(sa.delete(_TABLE).where(_TABLE.c.kid.in_(doomed)))
            return doomed

    async def remove(
        self, kid: str, *, replacement_bits: int = MIN_RSA_BITS, clock: Clock = time.time
    ) -> SigningKey | None:
        """Emergency revocation (`directory.remove`'s contract), in one transaction."""
        replacement = await asyncio.to_thread(generate_key, replacement_bits)  # maybe unused
        async with self._engine.begin() as conn:
            entries = await self._begin_writer(conn)
            if not any(e.kid == kid for e in entries):
                raise NoSigningKeys(f"no key {kid!r:.80} in {self.where}")
            await conn.execute(sa.delete(_TABLE).where(_TABLE.c.kid == kid))
            now = clock()
            if any(e.activates_at <= now for e in entries if e.kid != kid):
                return None
            return await self._insert(conn, replacement, created_at=now, activates_at=now)

    async def reseal(self, new_kek: bytes) -> int:
        """Seal every key again under `new_kek` (a KEK rotation), in one transaction.

        Every row must open under the current KEK first; nothing changes
        otherwise. Replicas still running on the old KEK keep the keys they
        have loaded, but can open no key added after this: roll them out
        with the new KEK next (docs/OPERATIONS.md, "Where the keys live").

        Returns:
            How many keys were sealed again.
        """
        new_box = AeadBox(new_kek, _DOMAIN)
        async with self._engine.begin() as conn:
            await self._begin_writer(conn)
            rows = (await conn.execute(sa.select(_TABLE))).all()
            for r in rows:
                entry = StoredKey(r.kid, _seconds(r.created_at), _seconds(r.activates_at), r.dev)
                self._unseal(entry, r.private_key_sealed)  # refuses before any update
            for r in rows:
                der = self._box.open(r.kid.encode(), r.private_key_sealed)
                await conn.execute(
                    sa.update(_TABLE)
                    .where(_TABLE.c.kid == r.kid)
                    .values(private_key_sealed=new_box.seal(r.kid.encode(), der))
                )
            return len(rows)
