"""AuditTableWriter's thread path on SQLite files (real SQLite, no mocks).

On a SQLite file the writer inserts from one dedicated thread through a
blocking engine; these pin what the async path guaranteed: identical rows,
order, flush, nothing lost at close, bounded queue, counted drops.
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
from shared.db.engine import make_engine, make_sync_sqlite_engine, sqlite_file_url

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


def test_thread_path_only_for_sqlite_files(tmp_path: Path) -> None:
    assert AuditTableWriter(
        make_engine(f"sqlite+aiosqlite:///{tmp_path}/a.db"), service="s"
    ).threaded
    assert not AuditTableWriter(make_engine("sqlite+aiosqlite:///:memory:"), service="s").threaded
    assert not AuditTableWriter(make_engine("sqlite+aiosqlite://"), service="s").threaded
    pg = make_engine("postgresql+asyncpg://u:p@127.0.0.1:5432/x")  # never connected
    assert not AuditTableWriter(pg, service="s").threaded
    assert sqlite_file_url(make_engine(f"sqlite+aiosqlite:///{tmp_path}/b.db").url)
    with pytest.raises(ValueError, match="file SQLite"):
        make_sync_sqlite_engine(make_engine("sqlite+aiosqlite:///:memory:").url)


async def test_thread_rows_equal_async_rows(tmp_path: Path) -> None:
    """Same events through both paths read back identically (types, JSON, times)."""
    results = []
    for threaded in (True, False):
        engine = await _engine(tmp_path / f"{threaded}.db")
        writer = AuditTableWriter(engine, service=SERVICE, threaded=threaded)
        assert writer.threaded is threaded
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
            await engine.dispose()
        for row in rows:
            row.pop("id")
            row.pop("time")
        results.append(rows)
    assert len(results[0]) == 4
    assert results[0] == results[1]
    assert results[0][0]["details"] == {"seq": 0, "note": "\u00e9t\u00e9"}
    assert results[0][0]["reason"] == "r" * 64  # cut to the column, like the async path


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
        assert drops.threads == {f"audit-writer-{SERVICE}"}
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
        assert drops.count == 5  # what was still queued
        lock.execute("COMMIT")
        for _ in range(100):  # the batch in flight now succeeds (or fails, counted)
            if not any(t.name == f"audit-writer-{SERVICE}" for t in threading.enumerate()):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the writer thread did not stop")
        # Every event is either stored or counted as dropped, exactly once.
        assert len(await _stored(engine)) + drops.count == 6
    finally:
        lock.close()
