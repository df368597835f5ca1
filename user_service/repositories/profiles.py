"""SQL access to profiles. Returns values or None; never raises HTTP errors."""

from __future__ import annotations

import uuid

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from user_service.models import Profile, utcnow
from user_service.schemas import ProfileUpsert


class ProfileRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get(self, profile_id: uuid.UUID) -> Profile | None:
        async with self._sessions() as s:
            return await s.get(Profile, profile_id)

    async def upsert(self, data: ProfileUpsert) -> tuple[Profile, bool]:
        """Insert or update by id; returns (profile, created). Idempotent, and
        safe under concurrent calls for one id (the loser of the insert race
        updates instead)."""
        for _ in range(2):
            async with self._sessions() as s:
                existing = await s.get(Profile, data.id)
                if existing is not None:
                    for field in ("name", "email", "date_of_birth", "job_title"):
                        setattr(existing, field, getattr(data, field))
                    existing.updated_at = utcnow()
                    s.add(existing)
                    await s.commit()
                    return existing, False
                profile = Profile(**data.model_dump())
                s.add(profile)
                try:
                    await s.commit()
                    return profile, True
                except IntegrityError:
                    await s.rollback()
        raise RuntimeError("profile upsert did not converge")

    async def page(self, *, limit: int, offset: int) -> tuple[list[Profile], int]:
        async with self._sessions() as s:
            total = (await s.exec(select(func.count()).select_from(Profile))).one()
            rows = await s.exec(
                select(Profile)
                .order_by(col(Profile.created_at), col(Profile.id))
                .limit(limit)
                .offset(offset)
            )
            return list(rows.all()), int(total)
