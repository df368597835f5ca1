"""The SQLite fast paths of the login and refresh reads answer exactly as the ORM does.

Login reads the identity by email and asks whether the account has a passkey;
refresh reads the identity's roles by id. On a SQLite file these skip the
async ORM (shared/db/sqlite_reads.py). Every test compares with the ORM path on
the same database, and checks that nothing is cached between reads.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel, col, select

from auth_service.models.identity import Identity
from auth_service.models.webauthn import NewCredential, RecoveryCode, WebAuthnCredential
from auth_service.repositories.credentials import CredentialRepository
from auth_service.repositories.identities import IdentityRepository
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.sqlite_reads import SQLitePrimaryKeyReader

pytestmark = pytest.mark.anyio

_TABLES = [Identity.__table__, WebAuthnCredential.__table__, RecoveryCode.__table__]  # type: ignore[attr-defined]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/auth.db")
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=_TABLES))
    yield engine
    await engine.dispose()


async def _orm_by_email(engine: AsyncEngine, key: str) -> Identity | None:
    async with make_sessionmaker(engine)() as s:
        result = await s.exec(
            select(Identity).where(col(Identity.email_key) == key, col(Identity.status) == "active")
        )
        return result.first()


async def _new_identity(repo: IdentityRepository, email: str) -> Identity:
    identity = await repo.create_pending(
        email=email, email_key=email.lower(), password_hash="$argon2id$v=19$m=19456,t=2,p=1$x$y"
    )
    assert identity is not None
    return identity


def _on_another_thread(reader: SQLitePrimaryKeyReader | None, key: object) -> None:
    # Opens the reader's connection on a thread that is not the event loop's:
    # every later use from the loop raises sqlite3.ProgrammingError (a real
    # sqlite3.Error), the case where the repository must fall back.
    assert reader is not None
    t = threading.Thread(target=reader.exists, args=(key,))
    t.start()
    t.join()


async def test_identity_by_email_matches_the_orm_and_sees_every_commit(
    engine: AsyncEngine,
) -> None:
    repo = IdentityRepository(make_sessionmaker(engine))
    assert repo._fast_email is not None  # file-backed SQLite takes the fast path
    identity = await _new_identity(repo, "Ada@Example.com")
    key = "ada@example.com"

    # Pending: neither path lets it log in.
    assert await repo.active_by_email(key) is None
    assert await _orm_by_email(engine, key) is None
    await repo.activate(identity.id)
    await repo.set_roles(key, ("support", "admin"))

    fast = await repo.active_by_email(key)
    orm = await _orm_by_email(engine, key)
    assert fast is not None
    assert orm is not None
    assert fast.model_dump() == orm.model_dump()
    assert fast.role_list == orm.role_list == ("admin", "support")
    assert await repo.active_by_email("nobody@example.com") is None
    assert await repo.active_by_email("ADA@example.com") is None  # the key is exact

    # No caching: the next read sees a new hash, then a disabled account.
    await repo.update_password_hash(identity.id, "$argon2id$v=19$m=65536,t=3,p=1$a$b")
    again = await repo.active_by_email(key)
    assert again is not None
    assert again.password_hash == "$argon2id$v=19$m=65536,t=3,p=1$a$b"
    await repo._update(identity.id, status="disabled")
    assert await repo.active_by_email(key) is None
    assert await _orm_by_email(engine, key) is None


async def test_roles_by_id_match_the_orm_and_see_every_commit(engine: AsyncEngine) -> None:
    repo = IdentityRepository(make_sessionmaker(engine))
    identity = await _new_identity(repo, "grace@example.com")
    assert await repo.active_roles_by_id(identity.id) is None  # pending
    await repo.activate(identity.id)
    assert await repo.active_roles_by_id(identity.id) == ()

    await repo.set_roles("grace@example.com", ("admin",))
    orm = await repo.active_by_id(identity.id)
    assert orm is not None
    assert await repo.active_roles_by_id(identity.id) == orm.role_list == ("admin",)

    await repo.delete(identity.id)
    assert await repo.active_roles_by_id(identity.id) is None
    assert await repo.active_roles_by_id(uuid.uuid4()) is None


async def test_passkey_check_matches_the_orm_count(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    identities = IdentityRepository(sessions)
    credentials = CredentialRepository(sessions)
    assert credentials._fast_owner is not None
    owner = await _new_identity(identities, "alan@example.com")
    other = await _new_identity(identities, "kurt@example.com")

    assert await credentials.enrolled(owner.id) is False
    assert await credentials.count(owner.id) == 0
    row = await credentials.add(
        user_id=owner.id,
        new=NewCredential(
            credential_id="Y3JlZA",
            public_key=b"\x01\x02",
            sign_count=0,
            transports=("internal",),
            aaguid="00000000-0000-0000-0000-000000000000",
            backup_eligible=False,
            backed_up=False,
        ),
        label="laptop",
    )
    assert row is not None
    # Seen by the very next read, for its owner only.
    assert await credentials.enrolled(owner.id) is True
    assert await credentials.count(owner.id) == 1
    assert await credentials.enrolled(other.id) is False

    await credentials.remove(user_id=owner.id, row_id=row.id, allow_last=True)
    assert await credentials.enrolled(owner.id) is False


async def test_a_failing_fast_path_falls_back_to_the_orm(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    repo = IdentityRepository(sessions)
    credentials = CredentialRepository(sessions)
    identity = await _new_identity(repo, "edsger@example.com")
    await repo.activate(identity.id)
    await repo.set_roles("edsger@example.com", ("admin",))
    _on_another_thread(repo._fast, identity.id)
    _on_another_thread(repo._fast_email, "edsger@example.com")
    _on_another_thread(credentials._fast_owner, identity.id)
    assert repo._fast_email is not None
    with pytest.raises(sqlite3.ProgrammingError):  # the fast path is out of order
        repo._fast_email.get("edsger@example.com")

    by_email = await repo.active_by_email("edsger@example.com")
    assert by_email is not None
    assert by_email.id == identity.id
    assert await repo.active_roles_by_id(identity.id) == ("admin",)
    assert await credentials.enrolled(identity.id) is False


async def test_a_key_column_of_another_table_is_refused(engine: AsyncEngine) -> None:
    with pytest.raises(ValueError, match="not a column"):
        SQLitePrimaryKeyReader.for_engine(
            engine,
            Identity.__table__,  # type: ignore[attr-defined]
            key=WebAuthnCredential.__table__.c.user_id,  # type: ignore[attr-defined]
        )


async def test_in_memory_sqlite_keeps_the_async_paths() -> None:
    engine = make_engine("sqlite+aiosqlite:///:memory:")
    try:
        sessions = make_sessionmaker(engine)
        assert IdentityRepository(sessions)._fast_email is None
        assert CredentialRepository(sessions)._fast_owner is None
    finally:
        await engine.dispose()
