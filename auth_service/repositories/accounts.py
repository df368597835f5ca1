"""SQL: an account's rows across every table that holds them (erasure)."""

from __future__ import annotations

import uuid

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from auth_service.models import ACCOUNT_OWNED


class AccountRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def erase(self, user_id: uuid.UUID) -> dict[str, int]:
        """Delete every row the account owns (`ACCOUNT_OWNED`), in one transaction.

        Explicit deletes rather than the foreign keys' ON DELETE CASCADE:
        SQLite enforces foreign keys only when each connection asks for it,
        and a table added later might not reference the identity at all.

        Returns:
            Rows deleted per table name (0 for a table with none).
        """
        deleted: dict[str, int] = {}
        async with self._sessions() as s:
            for table, owner in ACCOUNT_OWNED:
                result = await s.exec(delete(table).where(table.c[owner] == user_id))
                deleted[table.name] = int(result.rowcount or 0)
            await s.commit()
        return deleted
