"""The key ring the auth service signs with: the keys of the directory, loaded.

It reads the key directory (`auth_service.keys.directory`: format, rotation,
pruning), signs with the newest key whose activation time has come,
publishes every loaded key in the JWKS, and re-reads the directory when its
manifest changes, so replicas pick up a rotation without a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from auth_service.keys.directory import (
    ALGORITHM,
    MANIFEST,
    Clock,
    NoSigningKeys,
    SigningKey,
    add_key,
    generate_key,
    load_key,
    locked,
    manifest_entries,
    manifest_stamp,
    refuse_dev_keys,
    warn_if_exposed,
)
from shared.tokens.jwk import MIN_RSA_BITS

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
        key_dir: Path,
        keys: Sequence[SigningKey],
        *,
        clock: Clock = time.time,
        stamp: tuple[int, int, int] | None = None,
        allow_dev_keys: bool = True,
    ) -> None:
        """Wrap already loaded keys; `KeyRing.load` is the way to read a key directory."""
        self._dir = key_dir
        self._clock = clock
        self._stamp = stamp
        self._allow_dev_keys = allow_dev_keys
        self._loaded: tuple[SigningKey, ...] = ()
        self._keys: tuple[SigningKey, ...] = ()
        self._public: dict[str, RSAPublicKey] = {}
        self._revoked: frozenset[str] = frozenset()
        self._install(keys)

    def _install(self, keys: Sequence[SigningKey]) -> None:
        if not keys:
            raise NoSigningKeys(f"no signing keys in {self._dir}")
        self._loaded = tuple(keys)
        # A revoked kid (shared.access.key_revocation) is neither published
        # nor used, even while the directory still lists it.
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
            self._install(self._loaded)

    @classmethod
    def load(
        cls,
        key_dir: Path,
        *,
        generate_if_missing: bool,
        clock: Clock = time.time,
        allow_dev_keys: bool = True,
    ) -> KeyRing:
        """Load the key directory, creating a first key in development.

        Args:
            key_dir: the key directory (a volume or Secret shared by replicas).
            generate_if_missing: when the directory has no keys, generate an
                RSA-2048 key active at once (development, marked `dev` in the
                manifest); otherwise refuse.
            clock: wall-clock seconds.
            allow_dev_keys: False in production: refuse a directory holding
                any key that development generated, now and on every reload.

        Returns:
            The key ring.

        Raises:
            NoSigningKeys: no keys and generation not allowed, or no key is
                active yet (production must not start unable to sign).
            DevKeysRefused: a development key is present and not allowed.
            ValueError: the manifest or a key file is invalid.
        """
        if not manifest_entries(key_dir):
            if not generate_if_missing:
                raise NoSigningKeys(f"no signing keys in {key_dir}; run `rotate` or mount them")
            with locked(key_dir):
                # Another replica may have won the race for the lock.
                if not manifest_entries(key_dir):
                    now = clock()
                    add_key(
                        key_dir,
                        generate_key(MIN_RSA_BITS),
                        created_at=now,
                        activates_at=now,
                        dev=True,
                    )
                    _log.warning("generated a development signing key in %s", key_dir)
        stamp = manifest_stamp(key_dir)  # before reading: a later change is then seen as one
        entries = manifest_entries(key_dir)
        if not allow_dev_keys:
            refuse_dev_keys(key_dir, entries)
        keys = [load_key(key_dir, entry) for entry in entries]
        ring = cls(key_dir, keys, clock=clock, stamp=stamp, allow_dev_keys=allow_dev_keys)
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
            raise NoSigningKeys(f"no signing key in {self._dir} is active yet")
        return key

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWK Set to publish (RFC 7517 §5): every loaded key, pending ones included."""
        return {"keys": [dict(k.public_jwk) for k in self._keys]}

    async def get_key(self, kid: str) -> RSAPublicKey | None:
        """The public key for `kid`, or None (`shared.tokens.verify.KeySource`)."""
        return self._public.get(kid)

    def reload_if_changed(self) -> bool:
        """Re-read the directory when the manifest changed (one stat when it did not).

        Lets replicas that share a key directory or a Kubernetes Secret pick up
        rotations. Keys already loaded are reused, not parsed again.

        Returns:
            True when new keys were loaded.

        Raises:
            NoSigningKeys, ValueError, OSError: the new state is unusable; the
                loaded keys stay in use and the next call tries again.
        """
        try:
            stamp = manifest_stamp(self._dir)
        except FileNotFoundError:
            raise NoSigningKeys(f"{self._dir / MANIFEST} disappeared") from None
        if stamp == self._stamp:
            return False
        entries = manifest_entries(self._dir)
        if not self._allow_dev_keys:
            refuse_dev_keys(self._dir, entries)
        loaded = {(k.kid, k.created_at, k.activates_at): k for k in self._loaded}
        keys = [
            loaded.get((entry.kid, entry.created_at, entry.activates_at))
            or load_key(self._dir, entry)
            for entry in entries
        ]
        # Adopt nothing that could not sign right now: better the old keys
        # (still published by this replica) than a replica that cannot issue.
        usable = [k for k in keys if k.kid not in self._revoked]
        if _active(_newest_first(usable), self._clock()) is None:
            raise NoSigningKeys(f"{self._dir / MANIFEST} lists no active key; keeping the old")
        self._install(keys)
        self._stamp = stamp
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
        return jwt.encode(
            claims,
            key.private_key,  # a key object: PyJWT uses it as is, no PEM parse
            algorithm=ALGORITHM,
            headers={"typ": _TYP, "kid": key.kid},
        )

    def sign_id_token(self, claims: dict[str, Any]) -> str:
        """Sign an OpenID Connect ID token (OIDC Core §2) with the current key.

        `typ: JWT`, never `at+jwt`: a verifier of access tokens, which checks
        `typ`, refuses it even before it looks at the audience.
        """
        key = self.current_signing_key()
        return jwt.encode(
            claims, key.private_key, algorithm=ALGORITHM, headers={"typ": "JWT", "kid": key.kid}
        )

    def key_age_seconds(self) -> float:
        """Seconds since the current signing key was created (for rotation alerts)."""
        return self._clock() - self.current_signing_key().created_at
