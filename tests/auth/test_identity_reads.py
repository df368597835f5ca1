"""The login and refresh reads answer exactly as the ORM does, on SQLite and PostgreSQL.

Login reads the identity by email and whether the account has a second
factor (a passkey or a confirmed TOTP), in one statement; refresh reads the
identity's roles by id. Each is one statement on the read engine
(shared/db/reads.py). Every test
compares with an ORM read of the same database, and checks that nothing is
cached between reads.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel, col, select

from auth_service.models import AUTH_TABLES
from auth_service.models.identity import Identity
from auth_service.models.webauthn import NewCredential, WebAuthnCredential
from auth_service.repositories.credentials import CredentialRepository
from auth_service.repositories.identities import IdentityRepository
from auth_service.repositories.second_factors import SecondFactorReads
from auth_service.repositories.totp import TotpRepository
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.reads import EngineReads, KeyedReader, ReadSource, make_reads

pytestmark = pytest.mark.anyio

_TABLES = [t for t in AUTH_TABLES if t.name != "audit_events"]


@pytest.fixture
async def engine(db_urls: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(db_urls["auth"])
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=_TABLES))
    yield engine
    await engine.dispose()


@pytest.fixture
async def reads(engine: AsyncEngine) -> AsyncIterator[ReadSource]:
    reads = make_reads(engine)
    yield reads
    await reads.aclose()


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


async def test_identity_by_email_matches_the_orm_and_sees_every_commit(
    engine: AsyncEngine, reads: ReadSource
) -> None:
    repo = IdentityRepository(make_sessionmaker(engine), reads)
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


async def test_roles_by_id_match_the_orm_and_see_every_commit(
    engine: AsyncEngine, reads: ReadSource
) -> None:
    repo = IdentityRepository(make_sessionmaker(engine), reads)
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


def _credential(credential_id: str) -> NewCredential:
    return NewCredential(
        credential_id=credential_id,
        public_key=b"\x01\x02",
        sign_count=0,
        transports=("internal",),
        aaguid="00000000-0000-0000-0000-000000000000",
        backup_eligible=False,
        backed_up=False,
    )


async def test_passkey_check_matches_the_orm_count(engine: AsyncEngine, reads: ReadSource) -> None:
    sessions = make_sessionmaker(engine)
    identities = IdentityRepository(sessions, reads)
    credentials = CredentialRepository(sessions, reads)
    owner = await _new_identity(identities, "alan@example.com")
    other = await _new_identity(identities, "kurt@example.com")

    assert await credentials.enrolled(owner.id) is False
    assert await credentials.count(owner.id) == 0
    row = await credentials.add(user_id=owner.id, new=_credential("Y3JlZA"), label="laptop")
    assert row is not None
    # Seen by the very next read, for its owner only.
    assert await credentials.enrolled(owner.id) is True
    assert await credentials.count(owner.id) == 1
    assert await credentials.enrolled(other.id) is False

    await credentials.remove(user_id=owner.id, row_id=row.id, allow_last=True)
    assert await credentials.enrolled(owner.id) is False


async def test_a_key_column_of_another_table_is_refused(engine: AsyncEngine) -> None:
    with pytest.raises(ValueError, match="not a column"):
        KeyedReader(
            EngineReads(engine),
            Identity.__table__,  # type: ignore[attr-defined]
            key=WebAuthnCredential.__table__.c.user_id,  # type: ignore[attr-defined]
        )


async def test_second_factor_check_matches_the_orm_reads(
    engine: AsyncEngine, reads: ReadSource
) -> None:
    """The login gate (one statement) answers as the two ORM reads it replaced:
    a passkey or a confirmed TOTP is a second factor, a TOTP enrolment in
    progress is not; each account answers for itself; no caching."""
    sessions = make_sessionmaker(engine)
    identities = IdentityRepository(sessions, reads)
    credentials = CredentialRepository(sessions, reads)
    totp = TotpRepository(sessions)
    factors = SecondFactorReads(reads)
    owner = await _new_identity(identities, "emmy@example.com")
    other = await _new_identity(identities, "olga@example.com")

    async def orm(user_id: uuid.UUID) -> bool:
        return await credentials.count(user_id) > 0 or await totp.enrolled(user_id)

    async def both(user_id: uuid.UUID) -> bool:
        fast = await factors.any_enrolled(user_id)
        assert fast is await orm(user_id)
        return fast

    assert await both(owner.id) is False
    assert await both(uuid.uuid4()) is False  # no such account
    assert await totp.start(owner.id, "sealed-1")
    assert await both(owner.id) is False  # enrolment started, not confirmed
    assert await totp.confirm(owner.id, sealed="sealed-1", step=1)
    assert await both(owner.id) is True
    assert await both(other.id) is False
    assert await totp.remove(owner.id) == (True, True)
    assert await both(owner.id) is False

    row = await credentials.add(user_id=other.id, new=_credential("b3RoZXI"), label="phone")
    assert row is not None
    assert await both(other.id) is True  # a passkey alone
    assert await totp.start(other.id, "sealed-2")
    assert await totp.confirm(other.id, sealed="sealed-2", step=1)
    assert await both(other.id) is True  # both kinds
    await credentials.remove(user_id=other.id, row_id=row.id, allow_last=True)
    assert await both(other.id) is True  # TOTP still
    assert await both(owner.id) is False


async def test_login_read_matches_the_orm_and_the_second_factor_gate(
    engine: AsyncEngine, reads: ReadSource
) -> None:
    """A login's one read (identity by email with its second-factor answer)
    returns the identity the ORM returns and the answer the gate gives; an
    unconfirmed TOTP is no factor; another account's factor is not this one's;
    nothing is cached."""
    sessions = make_sessionmaker(engine)
    identities = IdentityRepository(sessions, reads)
    credentials = CredentialRepository(sessions, reads)
    totp = TotpRepository(sessions)
    gate = SecondFactorReads(reads)
    owner = await _new_identity(identities, "Hedy@Example.com")
    other = await _new_identity(identities, "ida@example.com")

    async def login(key: str) -> bool:
        found = await identities.active_for_login(key)
        orm = await _orm_by_email(engine, key)
        assert found is not None
        assert orm is not None
        assert found.identity.model_dump() == orm.model_dump()
        assert found.second_factor is await gate.any_enrolled(orm.id)
        return found.second_factor

    assert await identities.active_for_login("hedy@example.com") is None  # pending
    await identities.activate(owner.id)
    await identities.activate(other.id)
    assert await identities.active_for_login("nobody@example.com") is None
    assert await login("hedy@example.com") is False

    assert await totp.start(owner.id, "sealed-1")
    assert await login("hedy@example.com") is False  # enrolment in progress
    assert await totp.confirm(owner.id, sealed="sealed-1", step=1)
    assert await login("hedy@example.com") is True
    assert await login("ida@example.com") is False
    assert await totp.remove(owner.id) == (True, True)
    assert await login("hedy@example.com") is False

    row = await credentials.add(user_id=other.id, new=_credential("aWRh"), label="key")
    assert row is not None
    assert await login("ida@example.com") is True  # a passkey alone
    assert await login("hedy@example.com") is False
    await identities.update_password_hash(other.id, "$argon2id$v=19$m=65536,t=3,p=1$c$d")
    found = await identities.active_for_login("ida@example.com")
    assert found is not None
    assert found.identity.password_hash == "$argon2id$v=19$m=65536,t=3,p=1$c$d"
    await identities._update(other.id, status="disabled")
    assert await identities.active_for_login("ida@example.com") is None
