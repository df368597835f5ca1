"""The `audit_events` table each service keeps in its own database, and its queries.

One table per service, same shape: the services own separate schemas
(docs/ARCHITECTURE.md), and an event is stored by the service that saw it. Rows are
only ever inserted; nothing in the platform updates or deletes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Integer, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel

__all__ = [
    "AUDIT_TABLE",
    "SUBJECT_EXPORT_LIMIT",
    "AuditEventRow",
    "AuditQuery",
    "AuditStore",
    "row_from_record",
]

# How many of a user's own events a data export carries (the newest): enough
# for years of ordinary use, and a bound on what one request reads.
SUBJECT_EXPORT_LIMIT = 1000


class AuditEventRow(SQLModel, table=True):
    """One audit event. Core fields are columns (filterable), the rest is `details`."""

    __tablename__ = "audit_events"

    # BIGINT: an audit trail outlives 2**31 rows; INTEGER on SQLite, where only
    # "INTEGER PRIMARY KEY" is the auto-incrementing rowid.
    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    event: str = Field(max_length=64, index=True)
    outcome: str = Field(max_length=16)
    service: str = Field(max_length=64)
    user_id: str | None = Field(default=None, max_length=64, index=True)
    session_id: str | None = Field(default=None, max_length=64)
    reason: str | None = Field(default=None, max_length=64)
    client_ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=256)
    request_id: str | None = Field(default=None, max_length=128)
    trace_id: str | None = Field(default=None, max_length=32, index=True)
    details: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


AUDIT_TABLE: Table = AuditEventRow.__table__  # type: ignore[attr-defined]

_COLUMNS: Mapping[str, int] = {
    "event": 64,
    "outcome": 16,
    "service": 64,
    "user_id": 64,
    "session_id": 64,
    "reason": 64,
    "client_ip": 64,
    "user_agent": 256,
    "request_id": 128,
    "trace_id": 32,
}


def _parse_time(value: object) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return datetime.now(UTC)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


def row_from_record(record: Mapping[str, Any], *, service: str) -> dict[str, Any]:
    """Map an audit record (shared.audit.events) to column values.

    Strings are cut to their column's length: one odd value must not make
    PostgreSQL refuse the whole batch it travels in.
    """
    row: dict[str, Any] = {"time": _parse_time(record.get("time"))}
    for name, limit in _COLUMNS.items():
        value = record.get(name)
        row[name] = None if value is None else str(value)[:limit]
    row["service"] = row["service"] or service
    row["event"] = row["event"] or "unknown"
    row["outcome"] = row["outcome"] or "unknown"
    extra = {k: v for k, v in record.items() if k not in _COLUMNS and k != "time"}
    row["details"] = extra or None
    return row


@dataclass(frozen=True)
class AuditQuery:
    """Filters of one page; every field is optional, `limit` rows newest first."""

    event: str | None = None
    outcome: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None
    limit: int = 50


class AuditStore:
    """Reads and writes `audit_events` through the service's engine (not owned)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(insert(AUDIT_TABLE), list(rows))

    async def about(
        self, user_id: str, *, limit: int = SUBJECT_EXPORT_LIMIT
    ) -> tuple[list[dict[str, Any]], bool]:
        """The newest `limit` events whose subject is `user_id`, and whether
        there were more (the data export of that user)."""
        rows, more = await self.page(AuditQuery(user_id=user_id, limit=limit))
        return rows, more is not None

    async def page(self, query: AuditQuery) -> tuple[list[dict[str, Any]], int | None]:
        """One page of rows (column -> value), newest first, and the next page's cursor.

        Keyset pagination on the id: stable while events keep arriving, and
        as fast on page 1000 as on page 1. The cursor is None on the last page.
        """
        c = AUDIT_TABLE.c
        stmt = select(AUDIT_TABLE)
        for name in ("event", "outcome", "user_id", "session_id"):
            value = getattr(query, name)
            if value is not None:
                stmt = stmt.where(c[name] == value)
        # Times are stored in UTC (SQLite keeps no offset, so compare in UTC too).
        if query.since is not None:
            stmt = stmt.where(c.time >= _utc(query.since))
        if query.until is not None:
            stmt = stmt.where(c.time < _utc(query.until))
        if query.before_id is not None:
            stmt = stmt.where(c.id < query.before_id)
        stmt = stmt.order_by(c.id.desc()).limit(query.limit + 1)
        async with self._engine.connect() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(stmt)]
        for row in rows:
            row["time"] = _utc(row["time"])
        if len(rows) > query.limit:
            rows = rows[: query.limit]
            return rows, int(rows[-1]["id"])
        return rows, None


def _utc(value: datetime) -> datetime:
    """Aware UTC; a naive value (SQLite) is UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
