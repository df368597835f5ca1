"""SQL access to registered OAuth clients."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from auth_service.models.client import OAuthClient


class ClientRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def add(self, client: OAuthClient) -> None:
        async with self._sessions() as s:
            s.add(client)
            await s.commit()

    async def get(self, client_id: str) -> OAuthClient | None:
        async with self._sessions() as s:
            return await s.get(OAuthClient, client_id)

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
