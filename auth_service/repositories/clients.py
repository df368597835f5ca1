"""SQL access to registered OAuth clients."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from auth_service.models.client import OAuthClient
from shared.db.reads import KeyedReader, ReadSource


class ClientRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], reads: ReadSource) -> None:
        """`sessions` write; `reads` runs single-row reads (shared.db.reads)."""
        self._sessions = sessions
        # Every client authentication (`POST /token`, `/introspect`, `/revoke`)
        # and `GET /authorize` reads a client by id: one statement, no ORM
        # session (shared/db/reads.py).
        self._by_id = KeyedReader(reads, OAuthClient.__table__)  # type: ignore[attr-defined]

    async def add(self, client: OAuthClient) -> None:
        async with self._sessions() as s:
            s.add(client)
            await s.commit()

    async def get(self, client_id: str) -> OAuthClient | None:
        row = await self._by_id.get(client_id)
        # A transient OAuthClient: callers only read it.
        return None if row is None else OAuthClient.model_validate(dict(row))

    async def all(self) -> list[OAuthClient]:
        async with self._sessions() as s:
            result = await s.exec(select(OAuthClient).order_by(col(OAuthClient.created_at)))
            return list(result.all())

    async def delete(self, client_id: str) -> bool:
        async with self._sessions() as s:
            result = await s.exec(
                delete(OAuthClient).where(col(OAuthClient.client_id) == client_id)
            )
            await s.commit()
            return bool(result.rowcount == 1)
