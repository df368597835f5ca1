"""SQL access to recovery codes (stored as hashes only)."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from auth_service.models.identity import utcnow
from auth_service.models.webauthn import RecoveryCode


class RecoveryCodeRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def replace(self, user_id: uuid.UUID, code_hashes: list[str]) -> None:
        """Make `code_hashes` the user's only codes; the old set dies in the same
        transaction, so no moment exists where old and new both work."""
        async with self._sessions() as s:
            await s.exec(delete(RecoveryCode).where(col(RecoveryCode.user_id) == user_id))
            s.add_all(RecoveryCode(user_id=user_id, code_hash=h) for h in code_hashes)
            await s.commit()

    async def consume(self, user_id: uuid.UUID, code_hash: str) -> bool:
        """Spend one code; True only for the one caller that spent it.

        A single conditional UPDATE: of two logins racing with the same code,
        the database lets exactly one row change from unused to used.
        """
        async with self._sessions() as s:
            result = await s.exec(
                update(RecoveryCode)
                .where(
                    col(RecoveryCode.user_id) == user_id,
                    col(RecoveryCode.code_hash) == code_hash,
                    col(RecoveryCode.used_at).is_(None),
                )
                .values(used_at=utcnow())
            )
            await s.commit()
            return bool(result.rowcount == 1)

    async def remaining(self, user_id: uuid.UUID) -> int:
        async with self._sessions() as s:
            result = await s.exec(
                select(func.count())
                .select_from(RecoveryCode)
                .where(RecoveryCode.user_id == user_id, col(RecoveryCode.used_at).is_(None))
            )
            return int(result.one())
