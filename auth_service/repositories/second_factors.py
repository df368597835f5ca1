"""Whether an account has any second factor: the password-login gate, one statement."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, Table, bindparam, exists, or_, select

from auth_service.models.totp import TotpSecret
from auth_service.models.webauthn import WebAuthnCredential
from shared.db.reads import ReadSource

__all__ = ["SecondFactorReads", "has_second_factor"]


def has_second_factor(user_id: ColumnElement[Any]) -> ColumnElement[bool]:
    """SQL: the account `user_id` (a column or a parameter) has a passkey or a
    confirmed TOTP. The one definition of a second factor the gate uses, here
    and in the login's identity read (`IdentityRepository.active_for_login`)."""
    passkeys: Table = WebAuthnCredential.__table__  # type: ignore[attr-defined]
    totp: Table = TotpSecret.__table__  # type: ignore[attr-defined]
    return or_(
        exists().where(passkeys.c.user_id == user_id),
        # An unconfirmed TOTP is an enrolment in progress, not a factor.
        exists().where(totp.c.user_id == user_id, totp.c.confirmed_at.is_not(None)),
    )


class SecondFactorReads:
    """Asks, in one statement on the read engine, whether an account has a
    passkey or a confirmed TOTP.

    Asked as two reads (a passkey, then TOTP through an ORM session on the
    write engine) it cost seven round trips to PostgreSQL (the pool's
    pre-ping, BEGIN, SELECT, ROLLBACK) and a fifth of the event loop's work
    for a login (bench/README.md, P5). One autocommit statement sees every
    commit made before it, as the ORM read did. A password login no longer
    asks it separately: its identity read carries the answer (P13).

    Args:
        reads: where single-row reads run (shared.db.reads).
    """

    def __init__(self, reads: ReadSource) -> None:
        passkeys: Table = WebAuthnCredential.__table__  # type: ignore[attr-defined]
        key = bindparam("key", type_=passkeys.c.user_id.type)
        # Prepared once: compiled once, run as one statement per call.
        self._any = reads.prepare(select(has_second_factor(key).label("enrolled")))

    async def any_enrolled(self, user_id: uuid.UUID) -> bool:
        row = await self._any(user_id)
        return row is not None and bool(row["enrolled"])
