"""AuditTableWriter on a real SQLite file: rows, order, flush, close, bounds, counted drops.

The writer has one path for every database (a task on the event loop,
batches through the async engine); tests/observability/test_audit_durability.py
holds it to the same on PostgreSQL, across a real process's stop and crash.
A SQLite file is used here because another connection can hold its write
lock: the database being slow, on demand.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.audit.events import audit_event
from shared.audit.sink import AuditTableWriter, attach, detach
from shared.audit.store import AUDIT_TABLE, AuditQuery, AuditStore
from shared.db.engine import make_engine

pytestmark = pytest.mark.anyio

SERVICE = "writer-test"


async def _engine(path: Path, *, table: bool = True) -> AsyncEngine:
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    if table:
        async with engine.begin() as conn:
            await conn.run_sync(AUDIT_TABLE.create)
    return engine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = await _engine(tmp_path / "audit.db")
    yield engine
    await engine.dispose()


def _emit(n: int, *, start: int = 0, **fields: Any) -> None:
    for i in range(start, start + n):
        audit_event("writer.test", outcome="success", service=SERVICE, seq=i, **fields)


async def _stored(engine: AsyncEngine) -> list[dict[str, Any]]:
    rows, _ = await AuditStore(engine).page(AuditQuery(limit=10_000))
    return rows[::-1]  # oldest first


class Drops:
    def __init__(self) -> None:
        self.count = 0
        self.threads: set[str] = set()

    def __call__(self, n: int) -> None:
        self.count += n
        self.threads.add(threading.current_thread().name)


async def test_rows_read_back_as_emitted(engine: AsyncEngine) -> None:
    writer = AuditTableWriter(engine, service=SERVICE)
    await writer.start()
    attach(writer.handler)
    try:
        _emit(3, user_id="u1", session_id="s1", reason="r" * 100, note="\u00e9t\u00e9")
        audit_event("writer.other", outcome="failure", service=SERVICE, flag=True, n=1.5)
        await writer.flush()
        rows = await _stored(engine)
    finally:
        detach(writer.handler)
        await writer.aclose()
    assert [(r["event"], r["outcome"]) for r in rows] == [
        *[("writer.test", "success")] * 3,
        ("writer.other", "failure"),
    ]
    assert rows[0]["user_id"] == "u1"
    assert rows[0]["session_id"] == "s1"
    assert rows[0]["details"] == {"seq": 0, "note": "\u00e9t\u00e9"}
    assert rows[0]["reason"] == "r" * 64  # cut to the column
    assert rows[3]["details"] == {"flag": True, "n": 1.5}


async def test_events_from_any_thread_are_stored_in_order_and_flush_waits(
    engine: AsyncEngine,
) -> None:
    writer = AuditTableWriter(engine, service=SERVICE, batch_size=7)
    await writer.start()
    attach(writer.handler)
    try:
        _emit(50)
        others = [
            threading.Thread(target=_emit, args=(10,), kwargs={"start": 100 * (k + 1)})
            for k in range(3)
        ]
        for t in others:
            t.start()
        for t in others:
            t.join()
        await writer.flush()  # no sleeping: flush alone makes them readable
        rows = await _stored(engine)
    finally:
        detach(writer.handler)
        await writer.aclose()
    seqs = [r["details"]["seq"] for r in rows]
    assert sorted(seqs) == sorted(
        [*range(50), *range(100, 110), *range(200, 210), *range(300, 310)]
    )
    assert seqs[:50] == list(range(50))  # the loop's own events keep their order


async def test_close_writes_everything_queued(engine: AsyncEngine) -> None:
    drops = Drops()
    writer = AuditTableWriter(engine, service=SERVICE, on_drop=drops)
    await writer.start()
    attach(writer.handler)
    _emit(500)
    detach(writer.handler)
    await writer.aclose()  # no flush before: closing must drain
    assert len(await _stored(engine)) == 500
    assert drops.count == 0
    # After close, events are refused and counted, never silently lost.
    writer.handler.emit(_record())
    assert drops.count == 1


def _record() -> logging.LogRecord:
    rec = logging.LogRecord("audit", logging.INFO, __file__, 1, "x", None, None)
    rec.audit = {"event": "late", "outcome": "success", "service": SERVICE}
    return rec


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


async def test_queue_is_bounded_while_the_database_is_locked(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    drops = Drops()
    writer = AuditTableWriter(engine, service=SERVICE, on_drop=drops, max_queue=5)
    await writer.start()
    attach(writer.handler)
    lock = _hold_write_lock(tmp_path / "audit.db")
    try:
        _emit(1)
        await asyncio.sleep(0.2)  # the writer is now waiting for the lock
        _emit(7, start=1)
        assert drops.count == 2  # 5 queued behind the one in flight, 2 refused
        lock.execute("COMMIT")
        await writer.flush()
        assert [r["details"]["seq"] for r in await _stored(engine)] == [0, 1, 2, 3, 4, 5]
    finally:
        lock.close()
        detach(writer.handler)
        await writer.aclose()


async def test_rows_the_database_refuses_are_retried_then_counted(tmp_path: Path) -> None:
    engine = await _engine(tmp_path / "none.db", table=False)  # no audit table: INSERT fails
    drops = Drops()
    writer = AuditTableWriter(engine, service=SERVICE, on_drop=drops, retry_delays=(0.01, 0.01))
    await writer.start()
    attach(writer.handler)
    try:
        _emit(4)
        await writer.flush()
        assert drops.count == 4
        assert drops.threads == {threading.current_thread().name}  # the loop's
    finally:
        detach(writer.handler)
        await writer.aclose()
        await engine.dispose()


async def test_close_gives_up_after_drain_seconds_and_counts(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    drops = Drops()
    writer = AuditTableWriter(engine, service=SERVICE, on_drop=drops, drain_seconds=0.3)
    await writer.start()
    attach(writer.handler)
    lock = _hold_write_lock(tmp_path / "audit.db")
    try:
        _emit(1)
        await asyncio.sleep(0.2)  # the writer is now waiting for the lock
        _emit(5, start=1)
        detach(writer.handler)
        started = time.monotonic()
        await writer.aclose()
        assert time.monotonic() - started < 2.0  # bounded, not the 5 s busy timeout
        # What was queued and the batch in flight, counted at once.
        assert drops.count == 6
        lock.execute("COMMIT")
        await asyncio.sleep(0.5)  # the stopped batch's INSERT ends
        # Nothing counted as dropped is written after all, except possibly
        # the batch that was in flight (its commit may race the stop).
        assert len(await _stored(engine)) <= 1
    finally:
        lock.close()
