"""Pending WebAuthn ceremonies and MFA logins in Redis (`chal:<ceremony>:<id>`).

Each pending ceremony is one key with a TTL, read and deleted in one step
(GETDEL): a challenge answers one response at most, whatever the outcome,
so a replayed response finds nothing (L3 §13.4.3, "Cryptographic Challenges").
The key carries the ceremony, so a challenge issued for registration can
never complete a login; the value carries the user it was issued to.

- `chal:register:<sha256(challenge)>`  enrolment, bound to the bearer's user.
- `chal:login:<sha256(challenge)>`     passwordless login, bound to nobody yet.
- `chal:mfa:<sha256(mfa_token)>`       second step of a password login: the
  user and the challenge are bound to the opaque `mfa_token`.

Keys hold hashes, not the values themselves: the mfa_token is a bearer
secret (a Redis dump must not hand it out), and hashing the client-supplied
challenge bounds the key length whatever a client sends.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from shared.runtime.redis_topology import RedisClient

__all__ = ["Ceremony", "ChallengeStore", "PendingCeremony"]

# L3 §13.4.3: at least 16 bytes. 32 costs nothing more.
_CHALLENGE_BYTES = 32


class Ceremony(StrEnum):
    REGISTER = "register"
    LOGIN = "login"
    MFA = "mfa"


@dataclass(frozen=True)
class PendingCeremony:
    ceremony: Ceremony
    challenge: bytes
    user_id: str | None


def _digest(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


# Unpadded base64url, as py_webauthn writes challenges, without importing it:
# py_webauthn and its CBOR/ASN.1 stack load on the first passkey ceremony
# (services/webauthn/ceremonies.py), not for a password login's MFA step.
def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ChallengeStore:
    """Single-use, short-lived ceremony state.

    Args:
        redis: the shared client.
        prefix: REDIS_PREFIX.
        challenge_ttl: seconds a register/login challenge lives (a little
            longer than the `timeout` sent to the browser).
        mfa_ttl: seconds an mfa_token lives.
        random_bytes: randomness source (tests pin it).
    """

    def __init__(
        self,
        redis: RedisClient,
        *,
        prefix: str,
        challenge_ttl: int,
        mfa_ttl: int,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._r = redis
        self._p = prefix
        self._ttl = {Ceremony.REGISTER: challenge_ttl, Ceremony.LOGIN: challenge_ttl}
        self._mfa_ttl = mfa_ttl
        self._random = random_bytes

    def _key(self, ceremony: Ceremony, handle: str) -> str:
        return f"{self._p}chal:{ceremony.value}:{handle}"

    async def _put(self, key: str, value: dict[str, str | None], ttl: int) -> None:
        # NX: a collision (2**-256) must not overwrite someone's pending state.
        if not await self._r.set(key, json.dumps(value), ex=ttl, nx=True):
            raise RuntimeError("challenge key collision")

    async def _take(self, key: str, ceremony: Ceremony) -> PendingCeremony | None:
        raw = await self._r.getdel(key)
        if raw is None:
            return None
        value = json.loads(raw)
        return PendingCeremony(
            ceremony=ceremony,
            challenge=_from_b64url(value["challenge"]),
            user_id=value["user_id"],
        )

    async def begin(self, ceremony: Ceremony, *, user_id: str | None) -> bytes:
        """Start a register or login ceremony; returns its fresh challenge."""
        if ceremony is Ceremony.MFA:
            raise ValueError("use begin_mfa for the MFA step")
        challenge = self._random(_CHALLENGE_BYTES)
        await self._put(
            self._key(ceremony, _digest(challenge)),
            {"challenge": _b64url(challenge), "user_id": user_id},
            self._ttl[ceremony],
        )
        return challenge

    async def take(self, ceremony: Ceremony, challenge: bytes) -> PendingCeremony | None:
        """Consume the pending `ceremony` holding `challenge`; None when there is
        none (never issued, expired, already used, or issued for another ceremony)."""
        if ceremony is Ceremony.MFA:
            raise ValueError("use take_mfa for the MFA step")
        return await self._take(self._key(ceremony, _digest(challenge)), ceremony)

    async def begin_mfa(self, *, user_id: str) -> tuple[str, bytes]:
        """Start the second step of a login; returns (mfa_token, challenge)."""
        token = _b64url(self._random(32))  # 256-bit opaque bearer secret
        challenge = self._random(_CHALLENGE_BYTES)
        await self._put(
            self._key(Ceremony.MFA, _digest(token.encode())),
            {"challenge": _b64url(challenge), "user_id": user_id},
            self._mfa_ttl,
        )
        return token, challenge

    async def take_mfa(self, token: str) -> PendingCeremony | None:
        """Consume an mfa_token; None when unknown, expired or already used."""
        return await self._take(self._key(Ceremony.MFA, _digest(token.encode())), Ceremony.MFA)
