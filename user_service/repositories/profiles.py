"""SQL access to profiles. Returns values or None; never raises HTTP errors."""

from __future__ import annotations

import sqlite3
import uuid

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.db.sqlite_reads import SQLitePrimaryKeyReader
from user_service.models import Profile, utcnow
from user_service.schemas import ProfileEmailUpdate, ProfileOut, ProfileUpsert


class ProfileRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        bind = sessions.kw.get("bind")
        # SQLite files: reads skip the async ORM (see sqlite_reads for why and why safe).
        self._fast = (
            SQLitePrimaryKeyReader.for_engine(bind, Profile.__table__)  # type: ignore[attr-defined]
            if isinstance(bind, AsyncEngine)
            else None
        )

    async def get(self, profile_id: uuid.UUID) -> Profile | ProfileOut | None:
        """The profile, or None. On SQLite files the fast path answers with the
        read model itself (`ProfileOut`): an ORM `Profile` costs ~0.1 ms just to
        construct, and an uninstrumented one cannot be read before the mappers
        are configured. Callers read attributes only, which both types share."""
        if self._fast is not None:
            try:
                row = self._fast.get(profile_id)
            except sqlite3.Error:
                pass  # locked, or not migrated yet: the async path answers or raises
            else:
                return ProfileOut.model_validate(row) if row is not None else None
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

    async def update_email(
        self, profile_id: uuid.UUID, change: ProfileEmailUpdate
    ) -> Profile | None:
        """Set the email and/or its verification state; None when there is no profile."""
        async with self._sessions() as s:
            profile = await s.get(Profile, profile_id)
            if profile is None:
                return None
            for field, value in change.model_dump(exclude_none=True).items():
                setattr(profile, field, value)
            profile.updated_at = utcnow()
            s.add(profile)
            await s.commit()
            await s.refresh(profile)
            return profile

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
