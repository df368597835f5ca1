"""SQL access to WebAuthn credentials. Returns values or None; never raises HTTP errors."""

from __future__ import annotations

import uuid
from enum import StrEnum

from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from auth_service.models.identity import utcnow
from auth_service.models.totp import TotpSecret
from auth_service.models.webauthn import NewCredential, RecoveryCode, WebAuthnCredential
from shared.db.reads import KeyedReader, ReadSource


class Removal(StrEnum):
    REMOVED = "removed"
    REMOVED_LAST = "removed_last"  # the account has no passkey any more
    NOT_FOUND = "not_found"
    LAST_NEEDS_CONFIRMATION = "last_needs_confirmation"


class CredentialRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], reads: ReadSource) -> None:
        """`sessions` write; `reads` runs single-row reads (shared.db.reads)."""
        self._sessions = sessions
        table = WebAuthnCredential.__table__  # type: ignore[attr-defined]
        # The passkey check of every password login: one statement, no ORM
        # session (shared/db/reads.py); user_id is indexed.
        self._by_owner = KeyedReader(reads, table, key=table.c.user_id)

    async def add(
        self, *, user_id: uuid.UUID, new: NewCredential, label: str, enrolled_sid: str | None = None
    ) -> WebAuthnCredential | None:
        """Store a verified credential; None when its id is registered already.

        The unique index on `credential_id` decides, atomically, even when two
        registrations of one authenticator race (L3 §7.1 step 26).
        """
        row = WebAuthnCredential(
            credential_id=new.credential_id,
            user_id=user_id,
            public_key=new.public_key,
            sign_count=new.sign_count,
            transports=",".join(new.transports),
            aaguid=new.aaguid,
            backup_eligible=new.backup_eligible,
            backed_up=new.backed_up,
            label=label,
            enrolled_sid=enrolled_sid,
        )
        async with self._sessions() as s:
            s.add(row)
            try:
                await s.commit()
            except IntegrityError:
                await s.rollback()
                return None
        return row

    async def for_user(self, user_id: uuid.UUID) -> list[WebAuthnCredential]:
        async with self._sessions() as s:
            result = await s.exec(
                select(WebAuthnCredential)
                .where(WebAuthnCredential.user_id == user_id)
                .order_by(col(WebAuthnCredential.created_at))
            )
            return list(result.all())

    async def count(self, user_id: uuid.UUID) -> int:
        async with self._sessions() as s:
            result = await s.exec(
                select(func.count())
                .select_from(WebAuthnCredential)
                .where(WebAuthnCredential.user_id == user_id)
            )
            return int(result.one())

    async def enrolled(self, user_id: uuid.UUID) -> bool:
        """Whether the account has a second factor (the password-login gate)."""
        return await self._by_owner.exists(user_id)

    async def by_credential_id(self, credential_id: str) -> WebAuthnCredential | None:
        async with self._sessions() as s:
            result = await s.exec(
                select(WebAuthnCredential).where(WebAuthnCredential.credential_id == credential_id)
            )
            return result.first()

    async def record_use(
        self, row_id: uuid.UUID, *, expected_sign_count: int, new_sign_count: int, backed_up: bool
    ) -> bool:
        """Store the new counter if nobody else moved it meanwhile.

        A compare-and-set on the counter: of two assertions verified in
        parallel against the same stored counter, only one is recorded, and
        the caller refuses the other as a replay (L3 §6.1.1).
        """
        async with self._sessions() as s:
            result = await s.exec(
                update(WebAuthnCredential)
                .where(
                    col(WebAuthnCredential.id) == row_id,
                    col(WebAuthnCredential.sign_count) == expected_sign_count,
                )
                .values(sign_count=new_sign_count, backed_up=backed_up, last_used_at=utcnow())
            )
            await s.commit()
            return bool(result.rowcount == 1)

    async def remove(self, *, user_id: uuid.UUID, row_id: uuid.UUID, allow_last: bool) -> Removal:
        """Delete one of the user's passkeys, refusing the last one unless allowed.

        One transaction that first locks all of the user's credential rows
        (FOR UPDATE on PostgreSQL; SQLite serialises writers anyway): two
        parallel removals of an account's last two passkeys cannot both see
        "one other is left" and leave it with none. Removing the last one
        also deletes the recovery codes: they back up a passkey, and without
        one the account is back to password-only.
        """
        async with self._sessions() as s:
            result = await s.exec(
                select(WebAuthnCredential.id)
                .where(WebAuthnCredential.user_id == user_id)
                .with_for_update()
            )
            ids = set(result.all())
            if row_id not in ids:
                return Removal.NOT_FOUND
            # The last *second factor*: with a confirmed TOTP left, the last
            # passkey goes like any other and the recovery codes stay.
            totp = await s.exec(
                select(func.count())
                .select_from(TotpSecret)
                .where(
                    col(TotpSecret.user_id) == user_id, col(TotpSecret.confirmed_at).is_not(None)
                )
            )
            last = len(ids) == 1 and int(totp.one()) == 0
            if last and not allow_last:
                return Removal.LAST_NEEDS_CONFIRMATION
            stmt = delete(WebAuthnCredential).where(col(WebAuthnCredential.id) == row_id)
            if len(ids) > 1:
                # SQLite takes its write lock only at the first write, so two
                # removals can both have read "two left". Guard the delete
                # itself: the later one then deletes nothing and is told the
                # passkey is now the last.
                others = (
                    select(func.count())
                    .select_from(WebAuthnCredential)
                    .where(col(WebAuthnCredential.user_id) == user_id)
                    .scalar_subquery()
                )
                stmt = stmt.where(others > 1)
            deleted = await s.exec(stmt)
            if not deleted.rowcount:
                await s.rollback()
                return Removal.LAST_NEEDS_CONFIRMATION
            if last:
                await s.exec(delete(RecoveryCode).where(col(RecoveryCode.user_id) == user_id))
            await s.commit()
        return Removal.REMOVED_LAST if last else Removal.REMOVED
