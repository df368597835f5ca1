"""SQL access to identities. Returns values or None; never raises HTTP errors."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from auth_service.models.identity import Identity, parse_roles, utcnow
from shared.db.sqlite_reads import SQLitePrimaryKeyReader

# A pending identity older than this belongs to a registration that died
# between its two steps (process crash); a new registration may take the email.
STALE_PENDING = timedelta(minutes=2)


def _active_row(
    reader: SQLitePrimaryKeyReader | None, key: object
) -> tuple[bool, dict[str, Any] | None]:
    """`(answered, row)`: an active identity's row read on the SQLite fast path.

    Not answered (no fast path, or the file is locked or not migrated yet):
    the async ORM path answers or raises instead.
    """
    if reader is None:
        return False, None
    try:
        row = reader.get(key)
    except sqlite3.Error:
        return False, None
    return True, row if row is not None and row["status"] == "active" else None


class IdentityRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        bind = sessions.kw.get("bind")
        table = Identity.__table__  # type: ignore[attr-defined]
        # SQLite files: the per-refresh read by id and the per-login read by
        # email skip the async ORM (shared/db/sqlite_reads.py).
        engine = bind if isinstance(bind, AsyncEngine) else None
        self._fast = SQLitePrimaryKeyReader.for_engine(engine, table) if engine else None
        # email_key is unique (its index decides registration races).
        self._fast_email = (
            SQLitePrimaryKeyReader.for_engine(engine, table, key=table.c.email_key)
            if engine
            else None
        )

    async def create_pending(
        self, *, email: str, email_key: str, password_hash: str
    ) -> Identity | None:
        """Insert a pending identity; None when the email is already taken.

        The unique index on `email_key` decides races: of N concurrent
        registrations of one email exactly one insert commits.
        """
        for _ in range(2):
            identity = Identity(email=email, email_key=email_key, password_hash=password_hash)
            async with self._sessions() as s:
                s.add(identity)
                try:
                    await s.commit()
                    return identity
                except IntegrityError:
                    await s.rollback()
            if not await self._drop_stale_pending(email_key, utcnow() - STALE_PENDING):
                return None
        return None

    async def _drop_stale_pending(self, email_key: str, older_than: datetime) -> bool:
        async with self._sessions() as s:
            result = await s.exec(
                delete(Identity).where(
                    col(Identity.email_key) == email_key,
                    col(Identity.status) == "pending",
                    col(Identity.created_at) < older_than,
                )
            )
            await s.commit()
            return bool(result.rowcount)

    async def activate(self, identity_id: uuid.UUID) -> None:
        await self._update(identity_id, status="active")

    async def delete(self, identity_id: uuid.UUID) -> None:
        async with self._sessions() as s:
            await s.exec(delete(Identity).where(col(Identity.id) == identity_id))
            await s.commit()

    async def active_by_email(self, email_key: str) -> Identity | None:
        answered, row = _active_row(self._fast_email, email_key)
        if answered:
            return None if row is None else Identity.model_validate(row)
        async with self._sessions() as s:
            result = await s.exec(
                select(Identity).where(Identity.email_key == email_key, Identity.status == "active")
            )
            return result.first()

    async def active_by_id(self, identity_id: uuid.UUID) -> Identity | None:
        answered, row = _active_row(self._fast, identity_id)
        if answered:
            # Validated into a transient instance: callers only read it,
            # as they read the detached one the ORM path returns.
            return None if row is None else Identity.model_validate(row)
        async with self._sessions() as s:
            identity = await s.get(Identity, identity_id)
            return identity if identity and identity.status == "active" else None

    async def active_roles_by_id(self, identity_id: uuid.UUID) -> tuple[str, ...] | None:
        """The roles of an active identity, None when it is gone or not active.

        What a refresh needs, without building an `Identity` (model
        validation was most of the SQLite fast path's cost).
        """
        answered, row = _active_row(self._fast, identity_id)
        if answered:
            return None if row is None else parse_roles(row["roles"])
        identity = await self.active_by_id(identity_id)
        return None if identity is None else identity.role_list

    async def update_password_hash(self, identity_id: uuid.UUID, password_hash: str) -> None:
        await self._update(identity_id, password_hash=password_hash)

    async def set_email_verified(self, identity_id: uuid.UUID) -> None:
        await self._update(identity_id, email_verified=True)

    async def email_in_use(self, email_key: str, *, other_than: uuid.UUID) -> bool:
        """Whether an identity (active or pending) other than `other_than` holds `email_key`."""
        async with self._sessions() as s:
            result = await s.exec(
                select(Identity.id).where(
                    Identity.email_key == email_key, col(Identity.id) != other_than
                )
            )
            return result.first() is not None

    async def change_email(self, identity_id: uuid.UUID, *, email: str, email_key: str) -> bool:
        """Move the identity to a new, verified address; False when another
        identity took `email_key` meanwhile (the unique index decides, as it
        does for registrations)."""
        try:
            await self._update(identity_id, email=email, email_key=email_key, email_verified=True)
        except IntegrityError:
            return False
        return True

    async def set_roles(self, email_key: str, roles: tuple[str, ...]) -> Identity | None:
        async with self._sessions() as s:
            result = await s.exec(select(Identity).where(Identity.email_key == email_key))
            identity = result.first()
            if identity is None:
                return None
            identity.roles = ",".join(sorted(set(roles)))
            identity.updated_at = utcnow()
            s.add(identity)
            await s.commit()
            return identity

    async def _update(self, identity_id: uuid.UUID, **values: object) -> None:
        async with self._sessions() as s:
            await s.exec(
                update(Identity)
                .where(col(Identity.id) == identity_id)
                .values(updated_at=utcnow(), **values)
            )
            await s.commit()
