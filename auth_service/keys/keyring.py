"""The auth service's RS256 signing keys, kept in a directory every replica shares.

Layout of `key_dir` (0700):
    manifest.json    {"keys": [{"kid", "file", "created_at", "activates_at"}]}
    <kid>.pem        one unencrypted PKCS#8 private key per entry (0600)

Times are Unix seconds on the wall clock: activation must mean the same
instant to every replica and to the CLI, which a per-process monotonic clock
cannot. Rotation is publish-then-use: a new key enters the JWKS at once but
signs only from `activates_at`, by which time every replica and every JWKS
cache has learnt it; old keys stay published until `prune` proves that every
token they signed has expired.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import math
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from shared.jwk import MIN_RSA_BITS, rfc7638_thumbprint, rsa_public_jwk

__all__ = [
    "KeyRing",
    "ManifestEntry",
    "NoSigningKeys",
    "SigningKey",
    "manifest_entries",
    "prune",
    "rotate",
]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

MANIFEST = "manifest.json"
_LOCK_FILE = ".lock"
_ALGORITHM = "RS256"
_TYP = "at+jwt"  # RFC 9068 §2.1


class NoSigningKeys(Exception):
    """The key directory holds no usable signing key (and generating one was not allowed)."""


@dataclass(frozen=True)
class ManifestEntry:
    """One line of the manifest: which file holds which key, and from when it signs."""

    kid: str
    file: str
    created_at: float
    activates_at: float


@dataclass(frozen=True)
class SigningKey:
    """A loaded signing key. Its `kid` is the RFC 7638 thumbprint of its public key."""

    kid: str
    private_key: RSAPrivateKey = field(repr=False, compare=False)
    public_jwk: Mapping[str, str]
    created_at: float
    activates_at: float


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def manifest_entries(key_dir: Path) -> list[ManifestEntry]:
    """Read and validate the manifest; no private key is parsed.

    Args:
        key_dir: the key directory.

    Returns:
        The entries, in manifest order ([] when there is no manifest).

    Raises:
        ValueError: the manifest is not what this module writes.
    """
    try:
        raw = json.loads((key_dir / MANIFEST).read_bytes())
    except FileNotFoundError:
        return []
    if not isinstance(raw, dict) or not isinstance(raw.get("keys"), list):
        raise ValueError(f"{key_dir / MANIFEST}: expected an object with a 'keys' array")
    entries: list[ManifestEntry] = []
    for item in raw["keys"]:
        if not isinstance(item, dict):
            raise ValueError(f"{key_dir / MANIFEST}: expected key entries to be objects")
        kid, file = item.get("kid"), item.get("file")
        created_at, activates_at = item.get("created_at"), item.get("activates_at")
        # The file name comes from disk we trust less than code: a plain name
        # inside key_dir, never a path that escapes it.
        if not isinstance(file, str) or file != Path(file).name or file.startswith("."):
            raise ValueError(f"{key_dir / MANIFEST}: expected a plain file name, got {file!r:.80}")
        if not isinstance(kid, str) or not kid:
            raise ValueError(f"{key_dir / MANIFEST}: expected a kid string for {file}")
        created, activates = _seconds(created_at), _seconds(activates_at)
        if created is None or activates is None:
            raise ValueError(f"{key_dir / MANIFEST}: expected numeric times for {kid}")
        entries.append(ManifestEntry(kid, file, created, activates))
    return entries


def _signing_key(private_key: RSAPrivateKey, created_at: float, activates_at: float) -> SigningKey:
    jwk = rsa_public_jwk(private_key.public_key())
    kid = rfc7638_thumbprint(jwk)
    # use/alg tell verifiers what the key is for (RFC 7517 §4.2, §4.4); the
    # JWKS client only accepts use=sig, alg=RS256 keys.
    public_jwk = MappingProxyType({**jwk, "kid": kid, "use": "sig", "alg": _ALGORITHM})
    return SigningKey(kid, private_key, public_jwk, created_at, activates_at)


def _load_key(key_dir: Path, entry: ManifestEntry) -> SigningKey:
    private_key = serialization.load_pem_private_key(
        (key_dir / entry.file).read_bytes(), password=None
    )
    if not isinstance(private_key, RSAPrivateKey) or private_key.key_size < MIN_RSA_BITS:
        raise ValueError(f"{entry.file}: expected an RSA key of at least {MIN_RSA_BITS} bits")
    key = _signing_key(private_key, entry.created_at, entry.activates_at)
    # A manifest that names the wrong file would publish one key and sign with
    # another: every token would fail verification. Refuse instead.
    if key.kid != entry.kid:
        raise ValueError(
            f"{entry.file}: expected kid {entry.kid}, the key's thumbprint is {key.kid}"
        )
    return key


def _newest_first(keys: Sequence[SigningKey]) -> tuple[SigningKey, ...]:
    # Ties (same instants) go to the later manifest entry, as in `prune`.
    order = sorted(enumerate(keys), key=lambda ik: (ik[1].activates_at, ik[1].created_at, ik[0]))
    return tuple(key for _, key in reversed(order))


def _active(newest_first: Sequence[SigningKey], now: float) -> SigningKey | None:
    """The newest key whose activation time has come (keys ordered by `_newest_first`)."""
    return next((k for k in newest_first if k.activates_at <= now), None)


def _stamp(key_dir: Path) -> tuple[int, int, int]:
    # Inode too, not only mtime: os.replace gives a new inode even when two
    # writes fall in the same mtime tick, and a Kubernetes Secret update swaps
    # a symlink (stat follows it).
    st = (key_dir / MANIFEST).stat()
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class KeyRing:
    """The loaded keys: signs with the current one, publishes all of them.

    Implements `shared.verify.KeySource`, so the auth service verifies its own
    tokens locally under the same rules as every resource server.
    """

    def __init__(
        self,
        key_dir: Path,
        keys: Sequence[SigningKey],
        *,
        clock: Clock = time.time,
        stamp: tuple[int, int, int] | None = None,
    ) -> None:
        """Wrap already loaded keys; `KeyRing.load` is the way to read a key directory."""
        self._dir = key_dir
        self._clock = clock
        self._stamp = stamp
        self._keys: tuple[SigningKey, ...] = ()
        self._public: dict[str, RSAPublicKey] = {}
        self._install(keys)

    def _install(self, keys: Sequence[SigningKey]) -> None:
        if not keys:
            raise NoSigningKeys(f"no signing keys in {self._dir}")
        # Key objects are built here, once per key, never per sign/verify call.
        # A kid is the thumbprint of its public key, so a known kid's object is reused.
        public = {k.kid: self._public.get(k.kid) or k.private_key.public_key() for k in keys}
        self._keys, self._public = _newest_first(keys), public

    @classmethod
    def load(cls, key_dir: Path, *, generate_if_missing: bool, clock: Clock = time.time) -> KeyRing:
        """Load the key directory, creating a first key in development.

        Args:
            key_dir: the key directory (a volume or Secret shared by replicas).
            generate_if_missing: when the directory has no keys, generate an
                RSA-2048 key active at once (development); otherwise refuse.
            clock: wall-clock seconds.

        Returns:
            The key ring.

        Raises:
            NoSigningKeys: no keys and generation not allowed, or no key is
                active yet (production must not start unable to sign).
            ValueError: the manifest or a key file is invalid.
        """
        if not manifest_entries(key_dir):
            if not generate_if_missing:
                raise NoSigningKeys(f"no signing keys in {key_dir}; run `rotate` or mount them")
            with _locked(key_dir):
                # Another replica may have won the race for the lock.
                if not manifest_entries(key_dir):
                    now = clock()
                    _add_key(key_dir, _generate(MIN_RSA_BITS), created_at=now, activates_at=now)
                    logger.warning("generated a development signing key in %s", key_dir)
        stamp = _stamp(key_dir)  # before reading: a later change is then seen as one
        keys = [_load_key(key_dir, entry) for entry in manifest_entries(key_dir)]
        ring = cls(key_dir, keys, clock=clock, stamp=stamp)
        ring.current_signing_key()
        _warn_if_exposed(key_dir)
        return ring

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        """Every loaded key, newest activation first (pending and retired ones included)."""
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
        """The public key for `kid`, or None (`shared.verify.KeySource`)."""
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
            stamp = _stamp(self._dir)
        except FileNotFoundError:
            raise NoSigningKeys(f"{self._dir / MANIFEST} disappeared") from None
        if stamp == self._stamp:
            return False
        loaded = {(k.kid, k.created_at, k.activates_at): k for k in self._keys}
        keys = [
            loaded.get((entry.kid, entry.created_at, entry.activates_at))
            or _load_key(self._dir, entry)
            for entry in manifest_entries(self._dir)
        ]
        # Adopt nothing that could not sign right now: better the old keys
        # (still published by this replica) than a replica that cannot issue.
        if _active(_newest_first(keys), self._clock()) is None:
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
            algorithm=_ALGORITHM,
            headers={"typ": _TYP, "kid": key.kid},
        )

    def key_age_seconds(self) -> float:
        """Seconds since the current signing key was created (for rotation alerts)."""
        return self._clock() - self.current_signing_key().created_at


# --- writing the key directory (CLI, first start in development) -------------


def _generate(bits: int) -> RSAPrivateKey:
    if bits < MIN_RSA_BITS:
        raise ValueError(f"expected at least {MIN_RSA_BITS} bits, got {bits}")
    # F4, the only public exponent anyone should use (RFC 8017 leaves it open).
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@contextlib.contextmanager
def _locked(key_dir: Path) -> Iterator[None]:
    """Serialise writers of the key directory (CLI runs, replicas starting together)."""
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(key_dir, 0o700)  # mkdir's mode is masked and ignored for an existing dir
    fd = os.open(key_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _atomic_write(path: Path, data: bytes) -> None:
    """Write `data` so readers see the old or the new file, never a torn one."""
    # mkstemp creates the file 0600 whatever the umask: key material is never
    # readable by others, not even for an instant.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


def _write_manifest(key_dir: Path, entries: Sequence[ManifestEntry]) -> None:
    document = {
        "keys": [
            {
                "kid": e.kid,
                "file": e.file,
                "created_at": e.created_at,
                "activates_at": e.activates_at,
            }
            for e in entries
        ]
    }
    _atomic_write(key_dir / MANIFEST, json.dumps(document, indent=2).encode() + b"\n")


def _add_key(
    key_dir: Path, private_key: RSAPrivateKey, *, created_at: float, activates_at: float
) -> SigningKey:
    """Store a key and list it; the caller holds the lock."""
    key = _signing_key(private_key, created_at, activates_at)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),  # protected by file modes / the Secret store
    )
    entry = ManifestEntry(key.kid, f"{key.kid}.pem", created_at, activates_at)
    # Key file first, manifest second: a manifest never names a missing file.
    _atomic_write(key_dir / entry.file, pem)
    _write_manifest(key_dir, [*manifest_entries(key_dir), entry])
    return key


def _warn_if_exposed(key_dir: Path) -> None:
    for entry in manifest_entries(key_dir):
        mode = (key_dir / entry.file).stat().st_mode
        if stat.S_IMODE(mode) & 0o077:
            logger.warning(
                "signing key file %s is accessible to group/others (mode %o); expected 0600",
                entry.file,
                stat.S_IMODE(mode),
            )


def rotate(
    key_dir: Path, *, activate_after_seconds: int, clock: Clock = time.time, bits: int = 2048
) -> SigningKey:
    """Add a new signing key that is published now and signs from later.

    Args:
        key_dir: the key directory (created 0700 if missing).
        activate_after_seconds: delay before the key signs. It must exceed the
            replicas' reload interval and the JWKS clients' unknown-kid refetch
            interval, so that the key is known everywhere before it is used.
        clock: wall-clock seconds.
        bits: RSA modulus size, at least 2048.

    Returns:
        The new key.

    Raises:
        ValueError: bits under 2048 or a negative delay.
    """
    if activate_after_seconds < 0:
        raise ValueError(f"expected activate_after_seconds >= 0, got {activate_after_seconds}")
    private_key = _generate(bits)  # slow; outside the lock
    with _locked(key_dir):
        now = clock()
        return _add_key(
            key_dir, private_key, created_at=now, activates_at=now + activate_after_seconds
        )


def prune(key_dir: Path, *, older_than_seconds: int, clock: Clock = time.time) -> list[str]:
    """Remove retired keys whose tokens have all expired.

    A key is removed only when it is not the current signer and its successor
    (the next key in activation order) has been active for longer than
    `older_than_seconds`: the key stopped signing then, so with
    `older_than_seconds` >= the longest token lifetime + leeway + reload
    interval, no unexpired token can name it. Pending keys and the current
    key are never removed.

    Args:
        key_dir: the key directory.
        older_than_seconds: how long a successor must have been active.
        clock: wall-clock seconds.

    Returns:
        The kids removed.

    Raises:
        NoSigningKeys: the directory has no keys.
        ValueError: a negative age.
    """
    if older_than_seconds < 0:
        raise ValueError(f"expected older_than_seconds >= 0, got {older_than_seconds}")
    if not (key_dir / MANIFEST).is_file():
        raise NoSigningKeys(f"no signing keys in {key_dir}")
    with _locked(key_dir):
        entries = manifest_entries(key_dir)
        if not entries:
            raise NoSigningKeys(f"no signing keys in {key_dir}")
        now = clock()
        order = sorted(entries, key=lambda e: (e.activates_at, e.created_at))
        active = [e for e in order if e.activates_at <= now]
        if not active:
            return []
        current = active[-1]
        doomed = [
            entry
            for entry, successor in itertools.pairwise(order)
            if entry is not current
            and successor.activates_at <= now
            and now - successor.activates_at > older_than_seconds
        ]
        if not doomed:
            return []
        # Manifest first, files second: a manifest never names a missing file.
        _write_manifest(key_dir, [e for e in entries if e not in doomed])
        for entry in doomed:
            (key_dir / entry.file).unlink(missing_ok=True)
        return [e.kid for e in doomed]
