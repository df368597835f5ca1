"""SQL access to TOTP secrets (sealed) and their last accepted time step."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from auth_service.models.identity import utcnow
from auth_service.models.totp import TotpSecret
from auth_service.models.webauthn import RecoveryCode, WebAuthnCredential


class TotpRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get(self, user_id: uuid.UUID) -> TotpSecret | None:
        async with self._sessions() as s:
            return await s.get(TotpSecret, user_id)

    async def enrolled(self, user_id: uuid.UUID) -> bool:
        """Whether the account has a confirmed TOTP (a second factor)."""
        async with self._sessions() as s:
            result = await s.exec(
                select(func.count())
                .select_from(TotpSecret)
                .where(
                    col(TotpSecret.user_id) == user_id, col(TotpSecret.confirmed_at).is_not(None)
                )
            )
            return int(result.one()) > 0

    async def start(self, user_id: uuid.UUID, sealed: str) -> bool:
        """Store a new unconfirmed secret, replacing an unconfirmed one.

        Returns False, changing nothing, when the account's TOTP is confirmed
        already: a confirmed secret is only ever removed by `remove`.
        """
        for _ in range(2):  # a parallel `start` may insert between our delete and insert
            async with self._sessions() as s:
                await s.exec(
                    delete(TotpSecret).where(
                        col(TotpSecret.user_id) == user_id, col(TotpSecret.confirmed_at).is_(None)
                    )
                )
                if await s.get(TotpSecret, user_id) is not None:
                    await s.rollback()
                    return False
                s.add(TotpSecret(user_id=user_id, secret_sealed=sealed))
                try:
                    await s.commit()
                except IntegrityError:
                    await s.rollback()
                    continue
            return True
        return False

    async def confirm(self, user_id: uuid.UUID, *, sealed: str, step: int) -> bool:
        """Make the pending secret `sealed` a second factor, spending `step`.

        Conditional on the row still holding that same unconfirmed secret: a
        confirmation racing a new enrolment (or another confirmation) cannot
        confirm a secret the caller did not check its code against.
        """
        async with self._sessions() as s:
            result = await s.exec(
                update(TotpSecret)
                .where(
                    col(TotpSecret.user_id) == user_id,
                    col(TotpSecret.secret_sealed) == sealed,
                    col(TotpSecret.confirmed_at).is_(None),
                )
                .values(confirmed_at=utcnow(), last_used_step=step)
            )
            await s.commit()
            return bool(result.rowcount == 1)

    async def use_step(self, user_id: uuid.UUID, step: int) -> bool:
        """Record that a code of time step `step` was accepted; True only once.

        One conditional UPDATE: only a step later than the last accepted one
        moves the row, so of two logins racing with one code exactly one
        wins, and no code at or before an accepted one works again
        (RFC 6238 §5.2).
        """
        async with self._sessions() as s:
            result = await s.exec(
                update(TotpSecret)
                .where(
                    col(TotpSecret.user_id) == user_id,
                    col(TotpSecret.confirmed_at).is_not(None),
                    or_(
                        col(TotpSecret.last_used_step).is_(None),
                        col(TotpSecret.last_used_step) < step,
                    ),
                )
                .values(last_used_step=step)
            )
            await s.commit()
            return bool(result.rowcount == 1)

    async def remove(self, user_id: uuid.UUID) -> tuple[bool, bool]:
        """Delete the account's TOTP (confirmed or pending).

        Returns (removed, mfa_off): whether there was a confirmed TOTP, and
        whether the account is left without a second factor, in which case
        its recovery codes go in the same transaction (they back up a second
        factor; without one the account is back to password only).
        """
        async with self._sessions() as s:
            row = await s.get(TotpSecret, user_id)
            if row is None:
                return False, False
            was_on = row.confirmed_at is not None
            await s.exec(delete(TotpSecret).where(col(TotpSecret.user_id) == user_id))
            passkeys = await s.exec(
                select(func.count())
                .select_from(WebAuthnCredential)
                .where(col(WebAuthnCredential.user_id) == user_id)
            )
            mfa_off = was_on and int(passkeys.one()) == 0
            if mfa_off:
                await s.exec(delete(RecoveryCode).where(col(RecoveryCode.user_id) == user_id))
            await s.commit()
        return was_on, mfa_off
