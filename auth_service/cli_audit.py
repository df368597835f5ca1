"""Audit events of the operator CLIs (`auth_service.admin`, `auth_service.keys`).

An operator action is recorded like a request: one event in the auth
service's audit table, plus the same JSON line on stderr (stdout stays the
command's own output, which scripts may parse). `actor` is the OS user who
ran the command; there is no request, so no IP, request id or trace id.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from shared.audit.events import Detail, audit_event
from shared.audit.sink import AuditTableWriter, JsonLinesHandler, attach, detach

__all__ = ["CliAudit", "record_cli_event"]

SERVICE = "auth-service"


def _actor() -> str:
    # Behind sudo, the person is SUDO_USER, not root.
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers with arbitrary uids)
        return f"uid:{os.getuid()}"


def _emit(
    event: str,
    *,
    outcome: str,
    user_id: str | None = None,
    reason: str | None = None,
    **details: Detail,
) -> dict[str, Any]:
    return audit_event(
        event,
        outcome=outcome,
        service=SERVICE,
        user_id=user_id,
        reason=reason,
        session_id=None,
        request=None,
        actor=_actor(),
        via="cli",
        **details,
    )


class CliAudit:
    """Audit sinks for one CLI run on `engine`: `start`, `event`..., `aclose`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._writer = AuditTableWriter(engine, service=SERVICE, retry_delays=(0.2,))
        self._stderr = JsonLinesHandler(SERVICE, stream=lambda: sys.stderr)

    async def start(self) -> None:
        await self._writer.start()
        attach(self._writer.handler, self._stderr)

    def event(
        self,
        event: str,
        *,
        outcome: str,
        user_id: str | None = None,
        reason: str | None = None,
        **details: Detail,
    ) -> dict[str, Any]:
        """Emit one event (stderr now, the table by `aclose`)."""
        return _emit(event, outcome=outcome, user_id=user_id, reason=reason, **details)

    async def aclose(self) -> None:
        detach(self._writer.handler, self._stderr)
        await self._writer.aclose()


class _NoDatabase(Exception):
    pass


def record_cli_event(
    event: str, *, outcome: str, reason: str | None = None, **details: Detail
) -> None:
    """Record one event from a synchronous CLI (the keys CLI, which has no database).

    The stderr line is always written. The table row only when DATABASE_URL
    is set, as it is wherever the service runs: a bare `python -m
    auth_service.keys list` on a laptop must not create a database in the
    working directory. A database problem is reported, not raised: the
    action itself already happened.
    """
    asyncio.run(_record(event, outcome=outcome, reason=reason, details=details))


async def _record(
    event: str, *, outcome: str, reason: str | None, details: dict[str, Detail]
) -> None:
    from auth_service.config import AuthSettings
    from auth_service.migrate import MIGRATIONS
    from shared.db.engine import make_engine
    from shared.db.migrations import prepare_schema

    engine: AsyncEngine | None = None
    audit: CliAudit | None = None
    try:
        if not os.environ.get("DATABASE_URL"):
            raise _NoDatabase
        settings = AuthSettings()
        engine = make_engine(settings.database_url)
        await prepare_schema(engine, MIGRATIONS, production=settings.is_production)
        audit = CliAudit(engine)
        await audit.start()
    except _NoDatabase:
        print("note: DATABASE_URL is not set; audit event on stderr only", file=sys.stderr)
    except Exception as exc:
        # The class only: a driver's message could carry the URL and its password.
        print(
            f"warning: audit event not stored in the database: {type(exc).__name__}",
            file=sys.stderr,
        )
    try:
        if audit is not None:
            audit.event(event, outcome=outcome, user_id=None, reason=reason, **details)
        else:
            stderr = JsonLinesHandler(SERVICE, stream=lambda: sys.stderr)
            attach(stderr)
            try:
                _emit(event, outcome=outcome, user_id=None, reason=reason, **details)
            finally:
                detach(stderr)
    finally:
        if audit is not None:
            await audit.aclose()
        if engine is not None:
            await engine.dispose()
