"""SQL access to profiles. Returns values or None; never raises HTTP errors."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db.reads import KeyedReader, ReadSource
from user_service.models import Profile, utcnow
from user_service.schemas import ProfileOut, ProfileUpsert


class ProfileRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], reads: ReadSource) -> None:
        """`sessions` write; `reads` runs single-row reads (shared.db.reads)."""
        self._sessions = sessions
        # Only the columns the read model has (shared/db/reads.py: no ORM load).
        self._by_id = KeyedReader(
            reads,
            Profile.__table__,  # type: ignore[attr-defined]
            columns=list(ProfileOut.model_fields),
        )

    async def get(self, profile_id: uuid.UUID) -> ProfileOut | None:
        """The profile as its read model, or None."""
        row = await self._by_id.get(profile_id)
        return None if row is None else ProfileOut.model_validate(row)

    async def upsert(self, data: ProfileUpsert) -> tuple[Profile, bool]:
        """Insert or update by id; returns (profile, created). Idempotent, and
        safe under concurrent calls for one id (the loser of the insert race
        updates instead)."""
        for _ in range(2):
            async with self._sessions() as s:
                existing = await s.get(Profile, data.id)
                if existing is not None:
                    for field in ("name", "email", "date_of_birth", "job_title", "email_verified"):
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

    async def update(self, profile_id: uuid.UUID, changes: dict[str, object]) -> Profile | None:
        """Set `changes` (column -> value) on the profile; None when there is none."""
        async with self._sessions() as s:
            profile = await s.get(Profile, profile_id)
            if profile is None:
                return None
            for field, value in changes.items():
                setattr(profile, field, value)
            if changes:
                profile.updated_at = utcnow()
                s.add(profile)
                await s.commit()
                await s.refresh(profile)
            return profile

    async def delete(self, profile_id: uuid.UUID) -> bool:
        """Delete the profile; True when there was one."""
        async with self._sessions() as s:
            result = await s.exec(delete(Profile).where(col(Profile.id) == profile_id))
            await s.commit()
            return bool(result.rowcount)

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
