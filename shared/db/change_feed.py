"""Which rows changed, from PostgreSQL's LISTEN/NOTIFY, and since when that is known.

A trigger on the table (a migration of the service's) sends the changed row's
key with `pg_notify` when the change commits; this feed listens on a
connection of its own, so what a process remembers about those rows can be
dropped the moment any process, replica, operator CLI or hand-typed SQL
changes them.

The contract (docs/ARCHITECTURE.md, "What the auth service remembers"): while
`live()`, every change committed more than `stale_after_seconds` ago has
reached `on_change`. How:

- A heartbeat (`SELECT 1`) goes down the listening connection every
  `heartbeat_seconds`. PostgreSQL sends a listener the notifications of every
  transaction committed before a statement ahead of that statement's answer,
  and asyncpg runs the listener callbacks in the order their messages came,
  ahead of the statement's own result. A heartbeat sent at `t` that came back
  therefore means every change committed before `t` was delivered.
- `live()` is True only while a heartbeat sent within the last
  `stale_after_seconds` has come back. A silent or dead connection stops the
  heartbeats, so memory stops answering by itself; the loop then drops the
  connection and connects afresh, with a backoff up to 5 s.
- Every lost connection and every new one calls `on_reset` (forget all) and
  bumps `generation`, as every change does. A caller that reads the database
  takes `generation` before the read and remembers the answer only if it is
  unchanged after it (`ticket`/`valid`): a change that landed during the read
  then cannot leave its old value behind.

Only for PostgreSQL reached directly (`direct_connections_fit`): a
transaction pooler does not carry LISTEN across statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.asyncpg_direct import connect_params, direct_connections_fit

__all__ = ["ChangeFeed", "change_feed"]

_log = logging.getLogger(__name__)

_MAX_BACKOFF_SECONDS = 5.0
_CLOSE_TIMEOUT_SECONDS = 1.0


class ChangeFeed:
    """Notifications of one channel, with the liveness that makes memory safe.

    Args:
        connect: opens a new connection to the database (its own, never a
            pooled one: it stays LISTENing).
        channel: the `pg_notify` channel the table's trigger sends to.
        heartbeat_seconds: how often the connection is proven alive.
        stale_after_seconds: how old the last proof may be for `live()`.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        channel: str,
        *,
        heartbeat_seconds: float = 0.1,
        stale_after_seconds: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self.channel = channel
        self._heartbeat = heartbeat_seconds
        self._stale_after = stale_after_seconds
        self._clock = clock
        self._confirmed: float | None = None  # when the last answered heartbeat was sent
        self._generation = 0
        self._on_change: list[Callable[[str], None]] = []
        self._on_reset: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None

    def listen(self, on_change: Callable[[str], None], on_reset: Callable[[], None]) -> None:
        """Call `on_change(key)` for each notification, `on_reset()` when
        changes may have been missed (every connection lost or made)."""
        self._on_change.append(on_change)
        self._on_reset.append(on_reset)

    def live(self) -> bool:
        """Whether every change committed over `stale_after_seconds` ago has arrived."""
        confirmed = self._confirmed
        return confirmed is not None and self._clock() - confirmed <= self._stale_after

    def ticket(self) -> int | None:
        """Taken before a database read: None when nothing may be remembered now."""
        return self._generation if self.live() else None

    def valid(self, ticket: int | None) -> bool:
        """Whether a read that took `ticket` may be remembered: no change and
        no reconnection since, and the feed still live."""
        return ticket is not None and ticket == self._generation and self.live()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"change-feed:{self.channel}")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _changed(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._generation += 1
        for fn in self._on_change:
            fn(payload)

    def _reset(self) -> None:
        self._confirmed = None
        self._generation += 1
        for fn in self._on_reset:
            fn()

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                await conn.add_listener(self.channel, self._changed)
                # Listening from here: anything committed before was read fresh.
                self._reset()
                backoff = 0.1
                while True:
                    sent = self._clock()
                    await conn.fetchval("SELECT 1", timeout=self._stale_after)
                    self._confirmed = sent
                    await asyncio.sleep(self._heartbeat)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: forget, reconnect
                _log.warning(
                    "change feed %s lost (%s); reading through until it is back",
                    self.channel,
                    type(exc).__name__,
                )
            finally:
                self._reset()
                if conn is not None:
                    await _close(conn)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)


def change_feed(engine: AsyncEngine, channel: str) -> ChangeFeed | None:
    """A feed of `channel` on the engine's database; None where LISTEN cannot
    be held (SQLite, a transaction pooler)."""
    if not direct_connections_fit(engine):
        return None
    params = connect_params(engine, statement_timeout_ms=5000)
    # Named in pg_stat_activity, so an operator can tell it from the pools.
    params["server_settings"] = {**params["server_settings"], "application_name": f"{channel} feed"}

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(**params)

    return ChangeFeed(connect, channel)


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), _CLOSE_TIMEOUT_SECONDS)
    except Exception:  # a dead connection: drop it
        conn.terminate()
