"""The auth service's Redis key names, in one place (all behind `REDIS_PREFIX`).

The rule every store follows, so the same code runs on one server, Sentinel
and Redis Cluster (docs/CONTRACTS.md, "Redis keys"):

    Every key a Lua script or MULTI touches carries the same hash tag, the
    part in `{...}`, so they all live in one Cluster slot. Scripts receive
    every key they touch in KEYS (or build it from a KEYS entry's tag), and
    are registered with `shared.runtime.redis_topology.register_script`,
    which makes a Cluster refuse any script that strays from its slot.
    Keys used alone (one command) need no tag.

Tags in use:

- `{<sid>}`: a session, its refresh tokens and its revocation marker; a
  refresh token starts with its sid (22 characters, then its owner's id in
  22 and the secret), so the presented token names its slot before anything
  is read.
- `{<user_id>}`: the index of a user's sessions (`usess`), updated alone.
- `{<tag>}` of a one-time token: 16 hex digits derived from its subject,
  carried at the front of the token (16 characters, then the secret), shared
  by the token and the subject's index.
- `{<sha256>}` of an authorization code or a pending authorization request:
  each script and MULTI on them touches that one key only, so the record is
  its own slot (the digest spreads codes over the Cluster).

Tokens stay in the base64url alphabet (no separator): links and clients that
match `[A-Za-z0-9_-]+` keep working.

A new key goes here, with its tag and the reason for it.
"""

from __future__ import annotations

import hashlib
import re

from shared.access.revocation import revoked_key

__all__ = [
    "OWNER_LENGTH",
    "SID_LENGTH",
    "TAG_LENGTH",
    "AuthorizationKeys",
    "SessionKeys",
    "TokenKeys",
    "tag_of",
]

SID_LENGTH = 22  # secrets.token_urlsafe(16)
OWNER_LENGTH = 22  # a UUID's 16 bytes in unpadded base64url
TAG_LENGTH = 16  # TokenKeys.tag
# A presented token is the client's: only the base64url alphabet, bounded,
# ever becomes part of a key. Anything else is no token of ours.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,512}")


def tag_of(token: str, length: int) -> str | None:
    """The routing tag a token starts with (its first `length` characters,
    followed by a secret), or None when it is no token of ours."""
    if len(token) <= length or not _TOKEN.fullmatch(token):
        return None
    return token[:length]


class SessionKeys:
    """Sessions, refresh tokens and revocation markers (`{sid}`), the user index (`{uid}`)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def session(self, sid: str) -> str:
        return f"{self.prefix}sess:{{{sid}}}"

    def refresh_prefix(self, sid: str) -> str:
        """Refresh records of `sid` are this plus the token's SHA-256 hex."""
        return f"{self.prefix}rt:{{{sid}}}:"

    def refresh(self, sid: str, digest: str) -> str:
        return self.refresh_prefix(sid) + digest

    def revoked(self, sid: str) -> str:
        return revoked_key(self.prefix, sid)

    def user_sessions(self, user_id: str) -> str:
        return f"{self.prefix}usess:{{{user_id}}}"


class TokenKeys:
    """One-time tokens of one purpose: the token and its subject's index share a tag."""

    def __init__(self, prefix: str, purpose: str) -> None:
        self._base = f"{prefix}ott:{purpose}:"

    @staticmethod
    def tag(subject: str) -> str:
        # A digest, not the subject itself: a reset link carries the tag, and
        # need not carry the account id.
        return hashlib.sha256(b"idp ott tag\0" + subject.encode()).hexdigest()[:16]

    def token_prefix(self, tag: str) -> str:
        """Token records under `tag` are this plus the token's SHA-256 hex."""
        return f"{self._base}t:{{{tag}}}:"

    def token(self, tag: str, digest: str) -> str:
        return self.token_prefix(tag) + digest

    def data_prefix(self, tag: str) -> str:
        """Data issued with a token (e.g. the address a link proves) is this
        plus the token's SHA-256 hex."""
        return f"{self._base}d:{{{tag}}}:"

    def data(self, tag: str, digest: str) -> str:
        return self.data_prefix(tag) + digest

    def subject_prefix(self, tag: str) -> str:
        """A subject's index is this plus the subject (its tag is the subject's)."""
        return f"{self._base}s:{{{tag}}}:"

    def subject(self, subject: str) -> str:
        return self.subject_prefix(self.tag(subject)) + subject


class AuthorizationKeys:
    """Pending authorization requests and codes (RFC 6749 section 4.1), by digest.

    Each record is alone in every script and MULTI that touches it (redeem,
    bind, take), so its tag is its own digest: one slot per record.
    """

    def __init__(self, prefix: str) -> None:
        self._base = f"{prefix}authz:"

    def request(self, digest: str) -> str:
        return f"{self._base}req:{{{digest}}}"

    def code(self, digest: str) -> str:
        return f"{self._base}code:{{{digest}}}"
