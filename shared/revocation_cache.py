"""A revocation checker that answers from memory while a pub/sub feed is provably live.

Why: the per-request `EXISTS revoked:sid:<sid>` was the largest cost left on
an authenticated request (a redis-py round trip, ~0.2 ms on this machine;
bench/README.md). The auth service publishes every revocation on
`<prefix>revocations` (docs/CONTRACTS.md), so a resource server subscribed to
that channel learns of each one as it happens, and only needs Redis once per
session id to learn about revocations made *before* it subscribed.

The contract it keeps (DESIGN.md: a revoked session's tokens are rejected
within one second), and how:

- Memory answers only while the subscription is *live*: subscribed, and a
  heartbeat PING on the subscription connection came back within
  `stale_after_seconds` (0.5 s). Otherwise every call goes to Redis exactly as
  before (`fallback`), so a dropped or silently dead connection costs speed,
  never correctness. A connection stale for twice that is torn down and
  re-established.
- A session id is remembered as "not revoked" only if the subscription was
  live, without interruption, from before its Redis check was sent until after
  its answer: any revocation after the check then arrives as a message, and
  one before it was seen by the check. Every (re)subscription forgets all.
- Before answering, `is_revoked` first reads whatever the subscription socket
  already holds (a non-blocking `recv`, about a microsecond when empty), so a
  revocation that reached this host is applied before the next answer even if
  the event loop has not got round to the socket yet. Redis writes the
  published message in the same event-loop turn as the reply to the revoking
  client, so in practice the first request after a `POST /logout` returns is
  already refused, as it was with a Redis check per request.
- Nothing else is cached: no profile, no claims, no token; entries are bounded
  and dropping one only costs a Redis check.

The subscription speaks RESP2 over its own plain socket rather than through
redis-py, because that synchronous drain needs direct access to the socket.
Only `redis://` URLs are subscribed (TLS and unix sockets keep the
per-request check).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import urllib.parse
from collections.abc import Callable

from shared.revocation import RevocationChecker

__all__ = ["SubscribedRevocationChecker"]

_log = logging.getLogger(__name__)


def _command(*parts: str) -> bytes:
    """A RESP2 command (array of bulk strings)."""
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        raw = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


class _Incomplete(Exception):
    """The buffer ends inside a frame; wait for more bytes."""


def _parse(buf: bytes, pos: int) -> tuple[object, int]:
    """One RESP2 value from buf[pos:]; returns (value, next position).

    Simple strings and errors come back as str (errors prefixed "-"), bulk
    strings as bytes, integers as int, arrays as lists.

    Raises:
        _Incomplete: the frame is not complete yet.
        ValueError: not RESP2.
    """
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line = buf[pos : pos + 1], buf[pos + 1 : end]
    pos = end + 2
    if kind == b"+":
        return line.decode(errors="replace"), pos
    if kind == b"-":
        return "-" + line.decode(errors="replace"), pos
    if kind == b":":
        return int(line), pos
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise _Incomplete
        return buf[pos : pos + n], pos + n + 2
    if kind == b"*":
        items = []
        for _ in range(max(int(line), 0)):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    raise ValueError(f"unexpected RESP type {kind!r}")


class SubscribedRevocationChecker:
    """`RevocationChecker` fed by the revocation channel; see the module docstring.

    Args:
        fallback: the per-request checker (Redis EXISTS); used whenever the
            feed is not live, and once per session id while it is.
        redis_url: the Redis the auth service publishes to.
        channel: `shared.revocation.revocation_channel(prefix)`.
        heartbeat_seconds: PING interval on the subscription.
        stale_after_seconds: no PONG for this long and memory stops answering.
        max_entries: bound of each in-memory set (cleared when full).
        clock: monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        fallback: RevocationChecker,
        *,
        redis_url: str,
        channel: str,
        heartbeat_seconds: float = 0.2,
        stale_after_seconds: float = 0.5,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < heartbeat_seconds < stale_after_seconds < 1.0:
            # The one-second contract needs the staleness bound well inside it.
            raise ValueError("expected 0 < heartbeat < stale_after < 1 second")
        self._fallback = fallback
        self._url = urllib.parse.urlsplit(redis_url)
        self._channel = channel
        self._heartbeat = heartbeat_seconds
        self._stale_after = stale_after_seconds
        self._max = max_entries
        self._clock = clock
        self._sock: socket.socket | None = None
        self._buf = b""
        self._subscribed = False
        self._last_pong = float("-inf")
        self._generation = 0  # bumped at every (re)subscription and loss
        self._revoked: dict[str, None] = {}  # revoked while live (ordered set)
        self._clear: dict[str, None] = {}  # checked in Redis while live, not revoked since
        self._task: asyncio.Task[None] | None = None

    # --- RevocationChecker --------------------------------------------------------

    async def is_revoked(self, sid: str) -> bool:
        """Whether the session was revoked.

        Raises:
            RedisError, OSError: from the fallback (callers fail closed).
        """
        self._drain()
        if not self._live():
            return await self._fallback.is_revoked(sid)
        if sid in self._revoked:
            return True
        if sid in self._clear:
            return False
        generation = self._generation
        revoked = await self._fallback.is_revoked(sid)
        self._drain()
        if revoked:
            self._remember(self._revoked, sid)
        elif generation == self._generation and self._live() and sid not in self._revoked:
            self._remember(self._clear, sid)
        return revoked

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Start subscribing in the background; answers fall back until it is live."""
        if self._url.scheme != "redis" or not self._url.hostname:
            _log.warning("revocation feed needs a redis:// URL; checking Redis per request")
            return
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="revocation-feed")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._lost()

    # --- the feed -------------------------------------------------------------------

    def _live(self) -> bool:
        return self._subscribed and self._clock() - self._last_pong < self._stale_after

    def _remember(self, entries: dict[str, None], sid: str) -> None:
        if len(entries) >= self._max:
            entries.clear()  # crude but bounded: a dropped entry only costs a Redis check
        entries[sid] = None

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._connect()
                backoff = 0.1
                while self._sock is not None:
                    await asyncio.sleep(self._heartbeat)
                    self._drain()
                    if self._sock is None:
                        break
                    if self._clock() - self._last_pong > 2 * self._stale_after:
                        _log.warning("revocation feed silent; reconnecting")
                        break
                    self._sock.send(_command("PING"))
            except (OSError, TimeoutError, ValueError) as exc:
                _log.warning(
                    "revocation feed unavailable (%s); checking Redis per request",
                    type(exc).__name__,
                )
            self._lost()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self._url.hostname or "", self._url.port or 6379
        async with asyncio.timeout(2.0):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            family, type_, proto, _, address = infos[0]
            sock = socket.socket(family, type_, proto)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, address)
            except BaseException:
                sock.close()
                raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._buf = sock, b""
        hello = b""
        if self._url.password:
            user = urllib.parse.unquote(self._url.username or "")
            secret = urllib.parse.unquote(self._url.password)
            hello += _command("AUTH", user, secret) if user else _command("AUTH", secret)
        hello += _command("SUBSCRIBE", self._channel)
        await loop.sock_sendall(sock, hello)
        loop.add_reader(sock.fileno(), self._drain)

    def _lost(self) -> None:
        sock, self._sock = self._sock, None
        if self._subscribed or sock is not None:
            self._generation += 1
        self._subscribed = False
        self._revoked.clear()
        self._clear.clear()
        if sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()

    def _drain(self) -> None:
        """Apply everything the socket holds now; never blocks."""
        sock = self._sock
        if sock is None:
            return
        try:
            while True:
                try:
                    chunk = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    break
                if not chunk:
                    raise ConnectionResetError("closed by Redis")
                self._buf += chunk
            pos = 0
            while pos < len(self._buf):
                try:
                    frame, pos_next = _parse(self._buf, pos)
                except _Incomplete:
                    break
                pos = pos_next
                self._handle(frame)
            self._buf = self._buf[pos:]
        except (OSError, ValueError) as exc:
            _log.warning(
                "revocation feed lost (%s); checking Redis per request", type(exc).__name__
            )
            self._lost()

    def _handle(self, frame: object) -> None:
        if isinstance(frame, str):
            if frame.startswith("-"):
                raise ValueError("Redis refused the subscription")  # the message may hold secrets
            return  # +OK of AUTH
        if not isinstance(frame, list) or not frame or not isinstance(frame[0], bytes):
            return
        kind = frame[0]
        if kind == b"message" and len(frame) == 3 and isinstance(frame[2], bytes):
            sid = frame[2].decode(errors="replace")
            self._clear.pop(sid, None)
            self._remember(self._revoked, sid)
        elif kind == b"pong":
            self._last_pong = self._clock()
        elif kind == b"subscribe":
            # From here on every revocation reaches us: start remembering.
            self._generation += 1
            self._revoked.clear()
            self._clear.clear()
            self._subscribed = True
            self._last_pong = self._clock()
