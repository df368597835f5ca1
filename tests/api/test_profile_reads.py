"""The SQLite fast path of ProfileRepository.get returns what the ORM returns."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
from sqlmodel import SQLModel

from shared.db.engine import make_engine, make_sessionmaker
from user_service.models import Profile
from user_service.repositories.profiles import ProfileRepository
from user_service.schemas import ProfileOut, ProfileUpsert

pytestmark = pytest.mark.anyio


async def test_fast_read_matches_the_orm_and_sees_every_commit(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/user.db")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(
                lambda c: SQLModel.metadata.create_all(c, tables=[Profile.__table__])  # type: ignore[attr-defined]
            )
        sessions = make_sessionmaker(engine)
        repo = ProfileRepository(sessions)
        assert repo._fast is not None  # file-backed SQLite takes the fast path
        pid = uuid.uuid4()
        assert await repo.get(pid) is None
        body = ProfileUpsert(
            id=pid,
            name="Ada Lovelace",
            email="ada@example.com",
            date_of_birth=dt.date(1980, 12, 10),
            job_title="Analyst",
            created_at=dt.datetime.now(dt.UTC),
        )
        await repo.upsert(body)
        fast = await repo.get(pid)
        async with sessions() as s:
            orm = await s.get(Profile, pid)
        assert fast is not None
        assert orm is not None
        assert ProfileOut.model_validate(fast, from_attributes=True) == ProfileOut.model_validate(
            orm, from_attributes=True
        )
        # No caching: an update is visible to the very next read.
        await repo.upsert(body.model_copy(update={"job_title": "Engineer"}))
        again = await repo.get(pid)
        assert again is not None
        assert again.job_title == "Engineer"
    finally:
        await engine.dispose()


async def test_in_memory_sqlite_keeps_the_async_path() -> None:
    engine = make_engine("sqlite+aiosqlite:///:memory:")
    try:
        assert ProfileRepository(make_sessionmaker(engine))._fast is None
    finally:
        await engine.dispose()
