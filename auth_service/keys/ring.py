"""The key ring the auth service signs with: the keys of its key store, loaded.

It reads a key store (`auth_service.keys.store`: the key directory or the
database), signs with the newest key whose activation time has come,
publishes every loaded key in the JWKS, and reloads the store every
KEY_RELOAD_SECONDS, so replicas pick up a rotation without a restart. A
reload lists kids and times only and loads (parses, or unseals) just the keys
it has not seen.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from auth_service.keys.directory import (
    Clock,
    KeyEntry,
    NoSigningKeys,
    SigningKey,
    warn_if_exposed,
)
from auth_service.keys.jws import header_segment, sign_rs256
from auth_service.keys.store import DirectoryStore, KeyStore, refuse_dev_keys

__all__ = ["KeyRing"]

_log = logging.getLogger(__name__)

_TYP = "at+jwt"  # RFC 9068 §2.1


def _newest_first(keys: Sequence[SigningKey]) -> tuple[SigningKey, ...]:
    # Ties (same instants) go to the later manifest entry, as in `prune`.
    order = sorted(enumerate(keys), key=lambda ik: (ik[1].activates_at, ik[1].created_at, ik[0]))
    return tuple(key for _, key in reversed(order))


def _active(newest_first: Sequence[SigningKey], now: float) -> SigningKey | None:
    """The newest key whose activation time has come (keys ordered by `_newest_first`)."""
    return next((k for k in newest_first if k.activates_at <= now), None)


class KeyRing:
    """The loaded keys: signs with the current one, publishes all of them.

    Implements `shared.tokens.verify.KeySource`, so the auth service verifies its own
    tokens locally under the same rules as every resource server.
    """

    def __init__(
        self,
        store: KeyStore,
        keys: Sequence[SigningKey] = (),
        *,
        clock: Clock = time.time,
        allow_dev_keys: bool = True,
    ) -> None:
        """A ring over `store`, holding `keys` (none: `open` or `load_initial` fills it)."""
        self._store = store
        self._clock = clock
        self._allow_dev_keys = allow_dev_keys
        self._loaded: tuple[SigningKey, ...] = ()
        self._keys: tuple[SigningKey, ...] = ()
        self._public: dict[str, RSAPublicKey] = {}
        self._revoked: frozenset[str] = frozenset()
        if keys:
            self._install(keys)

    @property
    def store(self) -> KeyStore:
        return self._store

    @property
    def loaded(self) -> bool:
        """Whether the ring holds keys (`load_initial` has run, or `load` made it)."""
        return bool(self._loaded)

    def _install(self, keys: Sequence[SigningKey]) -> None:
        if not keys:
            raise NoSigningKeys(f"no signing keys in {self._store.where}")
        self._loaded = tuple(keys)
        # A revoked kid (shared.access.key_revocation) is neither published
        # nor used, even while the store still lists it.
        usable = [k for k in keys if k.kid not in self._revoked]
        # Key objects are built here, once per key, never per sign/verify call.
        # A kid is the thumbprint of its public key, so a known kid's object is reused.
        public = {k.kid: self._public.get(k.kid) or k.private_key.public_key() for k in usable}
        self._keys, self._public = _newest_first(usable), public

    def set_revoked(self, kids: frozenset[str]) -> None:
        """Stop publishing and signing with these kids at once (emergency revocation).

        Signing fails (`NoSigningKeys`) until a reload brings an active key
        that is not revoked: better no token than one every verifier refuses.
        """
        if kids != self._revoked:
            self._revoked = kids
            if self._loaded:
                self._install(self._loaded)

    @classmethod
    async def open(
        cls,
        store: KeyStore,
        *,
        generate_if_missing: bool,
        clock: Clock = time.time,
        allow_dev_keys: bool = True,
    ) -> KeyRing:
        """Load a key store (either kind) without blocking the event loop.

        Arguments and errors as `load`; also `WrongKeyEncryptionKey` (a
        database store whose KEY_ENCRYPTION_KEY cannot open the keys).
        """
        ring = cls(store, clock=clock, allow_dev_keys=allow_dev_keys)
        await ring.load_initial(generate_if_missing=generate_if_missing)
        return ring

    async def load_initial(self, *, generate_if_missing: bool) -> None:
        """Fill a ring made empty (the service builds it before its migrations run)."""
        if not await self._store.entries():
            if not generate_if_missing:
                raise NoSigningKeys(
                    f"no signing keys in {self._store.where}; run `python -m "
                    "auth_service.keys init` (or `rotate`) with the service's settings"
                )
            if await self._store.add_first_key(clock=self._clock, dev=True) is not None:
                _log.warning("generated a development signing key in %s", self._store.where)
        entries = await self._store.entries()
        if not self._allow_dev_keys:
            refuse_dev_keys(self._store.where, entries)
        self._install([await self._store.load(e) for e in entries])
        self.current_signing_key()
        if isinstance(self._store, DirectoryStore):
            await asyncio.to_thread(warn_if_exposed, self._store.key_dir)

    @classmethod
    def load(
        cls,
        key_dir: Path,
        *,
        generate_if_missing: bool,
        clock: Clock = time.time,
        allow_dev_keys: bool = True,
    ) -> KeyRing:
        """Load a key directory, creating a first key in development (synchronous).

        Args:
            key_dir: the key directory (a volume or Secret shared by replicas).
            generate_if_missing: when the directory has no keys, generate an
                RSA-2048 key active at once (development, marked `dev` in the
                manifest); otherwise refuse.
            clock: wall-clock seconds.
            allow_dev_keys: False in production: refuse a store holding
                any key that development generated, now and on every reload.

        Returns:
            The key ring.

        Raises:
            NoSigningKeys: no keys and generation not allowed, or no key is
                active yet (production must not start unable to sign).
            DevKeysRefused: a development key is present and not allowed.
            ValueError: the manifest or a key file is invalid.
        """
        store = DirectoryStore(key_dir)
        if not store.entries_now():
            if not generate_if_missing:
                raise NoSigningKeys(f"no signing keys in {key_dir}; run `rotate` or mount them")
            if store.add_first_key_now(clock=clock, dev=True) is not None:
                _log.warning("generated a development signing key in %s", key_dir)
        entries = store.entries_now()
        if not allow_dev_keys:
            refuse_dev_keys(store.where, entries)
        keys = [store.load_now(entry) for entry in entries]
        ring = cls(store, keys, clock=clock, allow_dev_keys=allow_dev_keys)
        ring.current_signing_key()
        warn_if_exposed(key_dir)
        return ring

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        """Every loaded key but revoked ones, newest activation first (pending ones too)."""
        return self._keys

    def current_signing_key(self) -> SigningKey:
        """The newest key whose activation time has come.

        A key that is published but not yet active is never used, so no token
        carries a kid that some JWKS cache cannot know yet.

        Raises:
            NoSigningKeys: every loaded key is still pending.
        """
        key = _active(self._keys, self._clock())
        if key is None:
            raise NoSigningKeys(f"no signing key in {self._store.where} is active yet")
        return key

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWK Set to publish (RFC 7517 §5): every loaded key, pending ones included."""
        return {"keys": [dict(k.public_jwk) for k in self._keys]}

    async def get_key(self, kid: str) -> RSAPublicKey | None:
        """The public key for `kid`, or None (`shared.tokens.verify.KeySource`)."""
        return self._public.get(kid)

    def _unchanged(self, entries: Sequence[KeyEntry]) -> bool:
        return [(e.kid, e.created_at, e.activates_at) for e in entries] == [
            (k.kid, k.created_at, k.activates_at) for k in self._loaded
        ]

    def _known(self) -> dict[tuple[str, float, float], SigningKey]:
        return {(k.kid, k.created_at, k.activates_at): k for k in self._loaded}

    def _adopt(self, keys: Sequence[SigningKey]) -> None:
        # Adopt nothing that could not sign right now: better the old keys
        # (still published by this replica) than a replica that cannot issue.
        usable = [k for k in keys if k.kid not in self._revoked]
        if _active(_newest_first(usable), self._clock()) is None:
            raise NoSigningKeys(f"{self._store.where} lists no active key; keeping the old")
        self._install(keys)

    async def reload(self) -> bool:
        """Re-read the store; load only the keys not loaded yet (either store kind).

        Keys already loaded are reused, not parsed or unsealed again, so an
        unchanged store costs one small read (a stat, or one SELECT of kids
        and times).

        Returns:
            True when the keys changed.

        Raises:
            NoSigningKeys, ValueError, OSError, SQLAlchemyError: the new state
                is unusable or unreadable; the loaded keys stay in use and the
                next call tries again.
        """
        entries = await self._store.entries()
        if self._unchanged(entries):
            return False
        if not self._allow_dev_keys:
            refuse_dev_keys(self._store.where, entries)
        known = self._known()
        keys = []
        for entry in entries:
            key = known.get((entry.kid, entry.created_at, entry.activates_at))
            keys.append(key or await self._store.load(entry))
        self._adopt(keys)
        return True

    def reload_if_changed(self) -> bool:
        """`reload` for a key directory, synchronously (tests, tools; the service awaits `reload`).

        Raises:
            TypeError: the ring is not over a key directory.
            NoSigningKeys, ValueError, OSError: as `reload`.
        """
        store = self._store
        if not isinstance(store, DirectoryStore):
            raise TypeError("reload_if_changed reads a key directory; await reload() instead")
        try:
            entries = store.entries_now()
        except FileNotFoundError:
            entries = []
        if not entries:
            raise NoSigningKeys(f"{store.where}: the manifest disappeared")
        if self._unchanged(entries):
            return False
        if not self._allow_dev_keys:
            refuse_dev_keys(store.where, entries)
        known = self._known()
        keys = [
            known.get((e.kid, e.created_at, e.activates_at)) or store.load_now(e) for e in entries
        ]
        self._adopt(keys)
        return True

    def sign(self, claims: dict[str, Any]) -> str:
        """Sign claims as an RFC 9068 access token with the current key.

        Args:
            claims: the JWT claims set.

        Returns:
            A compact JWS with header `{"alg": "RS256", "typ": "at+jwt", "kid": ...}`.

        Raises:
            NoSigningKeys: no key is active.
        """
        key = self.current_signing_key()
        return sign_rs256(header_segment(key.kid, _TYP), claims, key.private_key)

    def sign_id_token(self, claims: dict[str, Any]) -> str:
        """Sign an OpenID Connect ID token (OIDC Core §2) with the current key.

        `typ: JWT`, never `at+jwt`: a verifier of access tokens, which checks
        `typ`, refuses it even before it looks at the audience.
        """
        key = self.current_signing_key()
        return sign_rs256(header_segment(key.kid, "JWT"), claims, key.private_key)

    def key_age_seconds(self) -> float:
        """Seconds since the current signing key was created (for rotation alerts)."""
        return self._clock() - self.current_signing_key().created_at
