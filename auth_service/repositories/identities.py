"""SQL access to identities. Returns values or None; never raises HTTP errors."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, update
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from auth_service.models.identity import Identity, parse_roles, utcnow
from auth_service.repositories.active_roles import ActiveRoles
from auth_service.repositories.second_factors import has_second_factor
from shared.db.reads import KeyedReader, ReadSource, Row

# A pending identity older than this belongs to a registration that died
# between its two steps (process crash); a new registration may take the email.
STALE_PENDING = timedelta(minutes=2)
# The login read's extra column (no column of `identities` is named so).
_FACTOR = "has_second_factor"


def _active(row: Row | None) -> Identity | None:
    """An active identity's row as a transient `Identity` (callers only read
    it, as they read the detached one an ORM load returned)."""
    if row is None or row["status"] != "active":
        return None
    return Identity.model_validate(dict(row))


@dataclass(frozen=True)
class LoginIdentity:
    """An active identity as a password login reads it.

    `second_factor`: whether the account has a passkey or a confirmed TOTP
    (`has_second_factor`), read in the same statement as the identity. Only
    for after the password verified: before, it would tell a guesser which
    accounts have a second factor.
    """

    identity: Identity
    second_factor: bool


class IdentityRepository:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        reads: ReadSource,
        *,
        active_roles: ActiveRoles | None = None,
    ) -> None:
        """`sessions` write; `reads` runs single-row reads (shared.db.reads);
        `active_roles` remembers what `active_roles_by_id` read (None: read
        every time, as on SQLite and behind a transaction pooler)."""
        self._sessions = sessions
        self._active_roles = active_roles
        table = Identity.__table__  # type: ignore[attr-defined]
        # The per-refresh read by id and the per-login read by email: one
        # statement each, no ORM session (shared/db/reads.py).
        self._by_id = KeyedReader(reads, table)
        # A refresh needs two columns, not the password hash and the times:
        # fewer values to send and convert on the hottest write (P14).
        self._roles_by_id = KeyedReader(reads, table, columns=["status", "roles"])
        # email_key is unique (its index decides registration races).
        self._by_email = KeyedReader(reads, table, key=table.c.email_key)
        # A password login's one read: the identity and whether the account
        # has a second factor, one statement, one snapshot (P13; the gate
        # was a second statement after the hash, ~0.8 ms of the service's
        # event-loop CPU a login).
        self._for_login = reads.prepare(
            core_select(*table.columns, has_second_factor(table.c.id).label(_FACTOR)).where(
                table.c.email_key == bindparam("key")
            )
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
        self._forget(identity_id)

    async def active_by_email(self, email_key: str) -> Identity | None:
        return _active(await self._by_email.get(email_key))

    async def active_for_login(self, email_key: str) -> LoginIdentity | None:
        """The active identity by email with its second-factor answer (`LoginIdentity`)."""
        row = await self._for_login(email_key)
        if row is None or row["status"] != "active":
            return None
        values = dict(row)
        second_factor = bool(values.pop(_FACTOR))
        return LoginIdentity(Identity.model_validate(values), second_factor)

    async def active_by_id(self, identity_id: uuid.UUID) -> Identity | None:
        return _active(await self._by_id.get(identity_id))

    async def active_roles_by_id(self, identity_id: uuid.UUID) -> tuple[str, ...] | None:
        """The roles of an active identity, None when it is gone or not active.

        What a refresh needs, without building an `Identity` (model
        validation is most of a read's CPU), and from memory while the
        identities' change feed is live (`ActiveRoles`).
        """
        remembered = self._active_roles
        ticket = None
        if remembered is not None:
            roles = remembered.get(identity_id)
            if roles is not None:
                return roles
            ticket = remembered.ticket()
        row = await self._roles_by_id.get(identity_id)
        if row is None or row["status"] != "active":
            return None
        roles = parse_roles(row["roles"])
        if remembered is not None:
            remembered.remember(ticket, identity_id, roles)
        return roles

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
        self._forget(identity.id)
        return identity

    async def _update(self, identity_id: uuid.UUID, **values: object) -> None:
        async with self._sessions() as s:
            await s.exec(
                update(Identity)
                .where(col(Identity.id) == identity_id)
                .values(updated_at=utcnow(), **values)
            )
            await s.commit()
        if "status" in values or "roles" in values:
            self._forget(identity_id)

    def _forget(self, identity_id: uuid.UUID) -> None:
        """This replica's own change applies to its next refresh at once; the
        trigger's notification tells the others (and this one again)."""
        if self._active_roles is not None:
            self._active_roles.forget(identity_id)
