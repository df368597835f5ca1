"""Where audit events go: JSON lines on a stream, rows in the audit table, counters.

`shared.audit.events.audit_event` logs each event on the `audit` logger with the
record in `LogRecord.audit`. The handlers here are attached per service (in
its lifespan) and each handles only its own service's events, so two apps in
one test process do not write each other's events.

The table writer never blocks the event loop: `emit` only enqueues, and the
rows are inserted in batches, in their own transaction, so a failed request
still leaves its audit row. On PostgreSQL (and in-memory SQLite) a background
task writes them: on PostgreSQL through one autocommit connection of its own,
where a batch is one INSERT, its own transaction, one round trip (through the
write engine each batch also paid its pool's pre-ping, BEGIN and COMMIT:
four round trips more, ~0.4 ms of event-loop CPU a login; bench/README.md,
P5). A batch stays all or nothing, so a retried batch is never stored twice.
On a SQLite file one
dedicated thread writes through a blocking engine on the same file: the
event loop then only appends to a queue, instead of paying aiosqlite's two
thread hops per batch (issue 6: ~20% of a refresh's wall time at
concurrency 1 went to them).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from opentelemetry.instrumentation.utils import suppress_instrumentation
from sqlalchemy import Engine, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.audit.events import AUDIT_LOGGER
from shared.audit.store import AUDIT_TABLE, AuditStore, row_from_record
from shared.db.engine import make_autocommit_engine, make_sync_sqlite_engine, sqlite_file_url

__all__ = [
    "AuditCallbackHandler",
    "AuditTableWriter",
    "JsonLinesHandler",
    "attach",
    "audit_record",
    "detach",
]

_log = logging.getLogger(__name__)  # never the audit logger: no loops


def audit_record(record: logging.LogRecord) -> Mapping[str, Any] | None:
    """The audit event a log record carries, if any."""
    value = getattr(record, "audit", None)
    return value if isinstance(value, Mapping) else None


class _ServiceFilter(logging.Filter):
    """Pass the events of one service (and events that name no service)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        audit = audit_record(record)
        return audit is not None and audit.get("service") in (self.service, None)


class _ServiceHandler(logging.Handler):
    def __init__(self, service: str) -> None:
        super().__init__(level=logging.INFO)
        self.service = service
        self.addFilter(_ServiceFilter(service))

    def _record(self, record: logging.LogRecord) -> dict[str, Any]:
        audit = dict(audit_record(record) or {})
        if audit.get("service") is None:
            audit["service"] = self.service
        return audit


class JsonLinesHandler(_ServiceHandler):
    """One JSON object per line, `"log": "audit"` first so collectors can route it.

    Args:
        service: whose events to write.
        stream: returns the stream to write to; looked up per event (stdout by
            default), so a replaced `sys.stdout` is honoured.
    """

    def __init__(self, service: str, stream: Callable[[], TextIO] = lambda: sys.stdout) -> None:
        super().__init__(service)
        self._stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = json.dumps(
                {"log": "audit", **self._record(record)},
                separators=(",", ":"),
                ensure_ascii=False,
                default=str,
            )
            stream = self._stream()
            # Small synchronous write, as every logging handler does; one
            # write call per line keeps lines whole between processes.
            stream.write(line + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


class AuditCallbackHandler(_ServiceHandler):
    """Calls `fn(event)` for each event of the service (e.g. the security counters)."""

    def __init__(self, service: str, fn: Callable[[Mapping[str, Any]], None]) -> None:
        super().__init__(service)
        self._fn = fn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._fn(self._record(record))
        except Exception:
            self.handleError(record)


class AuditTableWriter:
    """Persists audit events into `audit_events` in the background.

    Args:
        engine: the service's engine (not owned: dispose of it after `aclose`).
        service: whose events to store.
        on_drop: called with a count when events are lost (queue full, or the
            database refused them after retries), for `idp_audit_events_dropped_total`.
            May be called from the writer thread (prometheus counters are thread-safe).
        max_queue: events held while the database is slow; beyond it new
            events are dropped (and counted) rather than memory growing unbounded.
        batch_size: most rows per INSERT.
        retry_delays: pauses between attempts of one batch before it is dropped.
        drain_seconds: how long `aclose` may take to write what is queued.
        threaded: write from a dedicated thread through a blocking engine;
            default: exactly when the engine's database is a SQLite file.
        linger_seconds: thread path: how long the writer waits after the first
            row for more to share its transaction (one commit per few rows
            under load); `flush` waits at most that much longer.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        service: str,
        on_drop: Callable[[int], None] | None = None,
        max_queue: int = 10_000,
        batch_size: int = 200,
        retry_delays: tuple[float, ...] = (0.1, 0.5, 2.0),
        drain_seconds: float = 5.0,
        threaded: bool | None = None,
        linger_seconds: float = 0.005,
    ) -> None:
        self._engine = engine
        # The async path's own engine (`start`); the service's until then.
        self._appends = engine
        self._store = AuditStore(engine)
        self._service = service
        self._on_drop = on_drop
        self._batch = batch_size
        self._delays = retry_delays
        self._drain_seconds = drain_seconds
        self._max_queue = max_queue
        self._threaded = sqlite_file_url(engine.url) if threaded is None else threaded
        # Async path (PostgreSQL, in-memory SQLite).
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=max_queue)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._task: asyncio.Task[None] | None = None
        # Thread path (SQLite file): rows, flush markers and the stop marker, in order.
        # No lock on the emitting side: a contended lock held across a GIL
        # switch stalled the event loop. SimpleQueue.put is atomic, the bound
        # is its qsize (plus one batch in flight).
        self._items: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._linger = linger_seconds
        self._accepting = False
        self._abandon = False
        self._worker: threading.Thread | None = None
        self._sync_engine: Engine | None = None
        self.handler = AuditCallbackHandler(service, self._enqueue)

    @property
    def threaded(self) -> bool:
        return self._threaded

    async def start(self) -> None:
        if self._threaded:
            self._sync_engine = make_sync_sqlite_engine(self._engine.url)
            self._abandon = False
            self._accepting = True
            self._worker = threading.Thread(
                target=self._work, name=f"audit-writer-{self._service}", daemon=True
            )
            self._worker.start()
            return
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        # One connection: one task writes, one batch at a time. No pre-ping:
        # a batch that met a dead connection is retried on a fresh one.
        self._appends = make_autocommit_engine(self._engine, pool_size=1)
        self._store = AuditStore(self._appends)
        self._task = asyncio.create_task(self._run(), name=f"audit-writer-{self._service}")

    def _enqueue(self, event: Mapping[str, Any]) -> None:
        row = row_from_record(event, service=self._service)
        if self._threaded:
            # Any thread may emit: SimpleQueue.put is thread-safe and never blocks.
            if self._accepting and self._items.qsize() < self._max_queue:
                self._items.put(row)
            else:
                self._dropped(1)
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            self._dropped(1)
            return
        if threading.get_ident() == self._thread:
            self._put(row)
        else:  # an event from a worker thread: hand it to the loop
            loop.call_soon_threadsafe(self._put, row)

    def _put(self, row: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(row)
        except asyncio.QueueFull:
            self._dropped(1)

    def _dropped(self, count: int) -> None:
        _log.error("%d audit event(s) could not be stored in the audit table", count)
        if self._on_drop is not None:
            self._on_drop(count)

    # --- thread path ---------------------------------------------------------------

    def _work(self) -> None:
        """The writer thread: batches of queued rows, in order, until the stop marker."""
        stop = False
        while not stop:
            item = self._items.get()
            if self._linger > 0 and isinstance(item, dict) and self._accepting:
                time.sleep(self._linger)  # without the GIL: the loop runs meanwhile
            rows: list[dict[str, Any]] = []
            markers: list[concurrent.futures.Future[None]] = []
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, concurrent.futures.Future):
                    markers.append(item)
                else:
                    rows.append(item)  # type: ignore[arg-type]
                if stop or len(rows) >= self._batch:
                    break
                try:
                    item = self._items.get_nowait()
                except queue.Empty:
                    break
            if rows:
                self._write_sync(rows)
            # A marker resolves only after every row queued before it is written.
            for marker in markers:
                if not marker.done():
                    marker.set_result(None)

    def _write_sync(self, rows: list[dict[str, Any]]) -> None:
        engine = self._sync_engine
        assert engine is not None
        for attempt, delay in enumerate((*self._delays, None)):
            try:
                with suppress_instrumentation(), engine.begin() as conn:
                    conn.execute(insert(AUDIT_TABLE), rows)
                return
            except Exception as exc:
                if delay is None or self._abandon:
                    _log.error("audit insert failed %d times: %s", attempt + 1, type(exc).__name__)
                    self._dropped(len(rows))
                    return
                time.sleep(delay)

    async def _flush_thread(self) -> None:
        worker = self._worker
        if worker is None or not worker.is_alive():
            return
        marker: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._items.put(marker)
        await asyncio.wrap_future(marker)

    async def _close_thread(self) -> None:
        worker = self._worker
        if worker is None:
            return
        self._accepting = False  # later events are counted as dropped
        try:
            async with asyncio.timeout(self._drain_seconds):
                await self._flush_thread()
        except TimeoutError:
            # Give up: count what is still queued; the batch in flight is
            # counted by the writer if it fails (no more retries).
            self._abandon = True
            left = 0
            with contextlib.suppress(queue.Empty):
                while True:
                    item = self._items.get_nowait()
                    if isinstance(item, dict):
                        left += 1
            if left:
                self._dropped(left)
        self._items.put(None)
        await asyncio.to_thread(worker.join, self._drain_seconds)
        self._worker = None
        if not worker.is_alive() and self._sync_engine is not None:
            self._sync_engine.dispose()
        self._sync_engine = None

    # --- async path ----------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            rows = [await self._queue.get()]
            while len(rows) < self._batch and not self._queue.empty():
                rows.append(self._queue.get_nowait())
            try:
                await self._write(rows)
            finally:
                for _ in rows:
                    self._queue.task_done()

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        for attempt, delay in enumerate((*self._delays, None)):
            try:
                # The writer's own INSERTs are not part of any request's trace.
                with suppress_instrumentation():
                    await self._store.insert_many(rows)
                return
            except Exception as exc:
                if delay is None:
                    _log.error("audit insert failed %d times: %s", attempt + 1, type(exc).__name__)
                    self._dropped(len(rows))
                    return
                await asyncio.sleep(delay)

    async def flush(self) -> None:
        """Wait until every event enqueued so far is in the table (or counted as dropped)."""
        if self._threaded:
            await self._flush_thread()
            return
        await self._queue.join()

    async def aclose(self) -> None:
        """Write what is queued (for at most `drain_seconds`), then stop."""
        if self._threaded:
            await self._close_thread()
            return
        if self._task is None:
            return
        try:
            async with asyncio.timeout(self._drain_seconds):
                await self.flush()
        except TimeoutError:
            self._dropped(self._queue.qsize())
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        self._loop = None
        if self._appends is not self._engine:
            await self._appends.dispose()
        self._appends = self._engine


def attach(*handlers: logging.Handler) -> None:
    """Install handlers on the audit logger.

    The logger is set to INFO and stops propagating: audit events must not
    depend on LOG_LEVEL, and the root handler would print each one a second
    time as a bare "INFO:audit:login" line.
    """
    logger = logging.getLogger(AUDIT_LOGGER)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in handlers:
        logger.addHandler(handler)


def detach(*handlers: logging.Handler) -> None:
    logger = logging.getLogger(AUDIT_LOGGER)
    for handler in handlers:
        logger.removeHandler(handler)
        handler.close()
