"""Where audit events go: JSON lines on a stream, rows in the audit table, counters.

`shared.audit.events.audit_event` logs each event on the `audit` logger with the
record in `LogRecord.audit`. The handlers here are attached per service (in
its lifespan) and each handles only its own service's events, so two apps in
one test process do not write each other's events.

The table writer never blocks the event loop: `emit` only enqueues, and a
background task inserts the rows in batches, each in its own transaction, so
a failed request still leaves its audit row. One path for every database:
the thread that once wrote SQLite files through a blocking engine was a
speed-up for the trial configuration only, and is gone (bench/README.md,
"Changes measured on PostgreSQL", P9). On PostgreSQL the task writes through
one asyncpg connection of its own, without SQLAlchemy in the per-batch path
(shared/db/appends.py: a batch is one executemany of an INSERT compiled once,
one implicit transaction, one round trip; through the async engine a batch of
one row cost ~1.5 ms of event-loop CPU a login; P5, P13). SQLite, and
PostgreSQL behind a transaction pooler, keep the engine, a batch per
transaction. Either way a batch stays all or nothing, so a retried batch is
never stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from opentelemetry.instrumentation.utils import suppress_instrumentation
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.audit.events import AUDIT_LOGGER
from shared.audit.store import AUDIT_TABLE, AuditStore, row_from_record
from shared.db.appends import PgAppends
from shared.db.asyncpg_direct import direct_connections_fit

__all__ = [
    "AuditCallbackHandler",
    "AuditTableWriter",
    "JsonLinesHandler",
    "attach",
    "audit_record",
    "detach",
]

_log = logging.getLogger(__name__)  # never the audit logger: no loops
_STOP_WAIT_SECONDS = 1.0


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

    What a stop can lose (docs/SECURITY_TEAM.md): nothing on a clean stop
    that drains within `drain_seconds`; past it, and on a crash, the rows
    still queued or in flight, each counted through `on_drop` when the stop
    is a clean one.

    Args:
        engine: the service's engine (not owned: dispose of it after `aclose`).
        service: whose events to store.
        on_drop: called with a count when events are lost (queue full, the
            database refused them after retries, or the drain at close ran
            out of time), for `idp_audit_events_dropped_total`.
        max_queue: events held while the database is slow; beyond it new
            events are dropped (and counted) rather than memory growing unbounded.
        batch_size: most rows per INSERT.
        retry_delays: pauses between attempts of one batch before it is dropped.
        drain_seconds: how long `aclose` may take to write what is queued.
        linger_seconds: how long a batch waits for more rows after its
            first. Requests end one at a time, so without it a busy service
            wrote ~3.5 rows a batch: a statement, a commit and ~100 µs of the
            event loop's CPU each (bench/README.md, P15). 5 ms made that
            ~12 rows a batch at a thousand refreshes a second, and adds 5 ms
            to what a crash can lose, far inside the tested 500 ms.
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
        linger_seconds: float = 0.005,
    ) -> None:
        self._engine = engine
        # Where batches go: the engine, or on PostgreSQL (`start`) a
        # connection of the writer's own.
        self._store: AuditStore | PgAppends = AuditStore(engine)
        self._service = service
        self._on_drop = on_drop
        self._batch = batch_size
        self._delays = retry_delays
        self._drain_seconds = drain_seconds
        self._linger = linger_seconds
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=max_queue)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._task: asyncio.Task[None] | None = None
        # The batch being written: counted as dropped if `aclose` stops it.
        self._in_flight = 0
        self.handler = AuditCallbackHandler(service, self._enqueue)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        if direct_connections_fit(self._engine):
            # One connection: one task writes, one batch at a time. No
            # pre-ping: a batch that met a dead connection is retried (after
            # `retry_delays`) on a fresh one.
            self._store = PgAppends(self._engine, AUDIT_TABLE, statement_timeout_ms=5000)
        self._task = asyncio.create_task(self._run(), name=f"audit-writer-{self._service}")

    @property
    def direct(self) -> PgAppends | None:
        """The PostgreSQL connection path once started there (for inspection)."""
        return self._store if isinstance(self._store, PgAppends) else None

    def _enqueue(self, event: Mapping[str, Any]) -> None:
        row = row_from_record(event, service=self._service)
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

    async def _run(self) -> None:
        while True:
            rows = [await self._queue.get()]
            self._in_flight = 1
            try:
                if self._linger > 0 and self._queue.qsize() < self._batch - 1:
                    # Held, not queued: counted as in flight if a stop cuts this short.
                    await asyncio.sleep(self._linger)
                while len(rows) < self._batch and not self._queue.empty():
                    rows.append(self._queue.get_nowait())
                self._in_flight = len(rows)
                await self._write(rows)
            finally:
                self._in_flight = 0
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
        await self._queue.join()

    async def aclose(self) -> None:
        """Write what is queued (for at most `drain_seconds`), then stop.

        Later events are refused and counted. What the drain could not write,
        queued or in flight, is counted as dropped: a batch whose commit
        raced the stop may then be both stored and counted, never neither.
        """
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._drain_seconds):
                await self.flush()
        self._loop = None  # from here on, events are refused and counted
        # Normally nothing; after a drain that ran out of time, the rest.
        left = self._queue.qsize() + self._in_flight
        task, self._task = self._task, None
        task.cancel()
        # Bounded too: a batch stuck in a driver (a SQLite file locked by
        # another process) may take the busy timeout to notice the
        # cancellation; it is counted already and is left to finish alone.
        await asyncio.wait({task}, timeout=_STOP_WAIT_SECONDS)
        if left:
            self._dropped(left)
        if isinstance(self._store, PgAppends):
            await self._store.aclose()
        self._store = AuditStore(self._engine)


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
