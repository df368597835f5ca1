"""Whether an account has any second factor: the password-login gate, one statement."""

from __future__ import annotations

import uuid

from sqlalchemy import Table, bindparam, exists, or_, select

from auth_service.models.totp import TotpSecret
from auth_service.models.webauthn import WebAuthnCredential
from shared.db.reads import ReadSource


class SecondFactorReads:
    """Asks, in one statement on the read engine, whether an account has a
    passkey or a confirmed TOTP.

    Every password login asks it. Asked as two reads (a passkey, then TOTP
    through an ORM session on the write engine) it cost seven round trips to
    PostgreSQL (the pool's pre-ping, BEGIN, SELECT, ROLLBACK) and a fifth of
    the event loop's work for a login (bench/README.md, P5). One autocommit
    statement sees every commit made before it, as the ORM read did.

    Args:
        reads: where single-row reads run (shared.db.reads).
    """

    def __init__(self, reads: ReadSource) -> None:
        passkeys: Table = WebAuthnCredential.__table__  # type: ignore[attr-defined]
        totp: Table = TotpSecret.__table__  # type: ignore[attr-defined]
        key = bindparam("key", type_=passkeys.c.user_id.type)
        # Prepared once: compiled once, run as one statement per call.
        self._any = reads.prepare(
            select(
                or_(
                    exists().where(passkeys.c.user_id == key),
                    # An unconfirmed TOTP is an enrolment in progress, not a factor.
                    exists().where(totp.c.user_id == key, totp.c.confirmed_at.is_not(None)),
                ).label("enrolled")
            )
        )

    async def any_enrolled(self, user_id: uuid.UUID) -> bool:
        row = await self._any(user_id)
        return row is not None and bool(row["enrolled"])
