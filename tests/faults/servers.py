"""Things fault tests break on purpose: a Redis of their own, a TCP proxy that
can stall, and both services served from threads of the test process.

Never the machine's shared Redis or PostgreSQL: other suites run against
them. A fault test starts its own redis-server on a free port and stops,
freezes or restarts that one; database faults go through a proxy in front of
a database the test created.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis
import uvicorn

from tests.e2e.processes import ServiceProcess, free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class OwnRedis:
    """A redis-server process owned by one test module.

    Persistence is append-only (fsync on every write) in the test's own
    directory, so a stop and start loses nothing: that is the production
    set-up (compose runs Redis with AOF), and it lets a test assert that a
    Redis outage loses no session.
    """

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.dir),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--daemonize", "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                client = redis.Redis(port=self.port, socket_timeout=0.5)
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            time.sleep(0.05)
        raise RuntimeError(f"own redis-server on :{self.port} did not start")

    def stop(self) -> None:
        """Stop the server (SIGTERM: AOF is flushed, the port is freed)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers.

        A hung Redis is nastier than a dead one: connect succeeds, every read
        waits. Only socket timeouts turn it into an error.
        """
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)


class StallingProxy:
    """A TCP proxy in a thread that forwards until `stall()`, then holds every
    byte (new connections too) until `resume()`: a database that stopped
    answering without closing anything, which no server-side timeout covers.

    `hold_replies_after(marker)` is the subtler fault: requests still reach
    the server and run, but a connection that sent `marker` gets no answer
    until `resume()`, as when a reply times out after the command executed.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._flowing: asyncio.Event | None = None
        self._hold_marker: bytes | None = None
        self._held: set[asyncio.Event] = set()
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StallingProxy:
        self._thread.start()
        assert self._ready.wait(10), "proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.resume()

        async def _close() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(_close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def stall(self) -> None:
        assert self._flowing is not None
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        if self._flowing is not None:
            self._loop.call_soon_threadsafe(self._flowing.set)
        self._loop.call_soon_threadsafe(self._release)

    def hold_replies_after(self, marker: bytes) -> None:
        """Until `resume()`, hold the replies on every connection that sends `marker`."""
        self._loop.call_soon_threadsafe(setattr, self, "_hold_marker", marker)

    def _release(self) -> None:
        self._hold_marker = None
        for gate in self._held:
            gate.set()
        self._held.clear()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._flowing = asyncio.Event()
            self._flowing.set()
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            await self._flowing.wait()
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except (OSError, asyncio.CancelledError):
            writer.close()
            return

        replies = asyncio.Event()  # set: this connection's replies flow
        replies.set()

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, upstream: bool
        ) -> None:
            assert self._flowing is not None
            try:
                while data := await src.read(65536):
                    await self._flowing.wait()
                    if upstream and self._hold_marker and self._hold_marker in data:
                        replies.clear()
                        self._held.add(replies)
                    if not upstream:
                        await replies.wait()
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(OSError, RuntimeError):
                    dst.close()

        await asyncio.gather(
            pipe(reader, up_writer, upstream=True), pipe(up_reader, writer, upstream=False)
        )


class ThreadedApp:
    """One ASGI app under uvicorn in a thread, on a port bound up front (so
    two services can be told each other's URL before either starts)."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self.port = int(sock.getsockname()[1])
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, app: Any) -> None:
        config = uvicorn.Config(
            app, lifespan="on", log_level="warning", proxy_headers=False, ws="none"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive(), "server thread died during start-up"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=15)
        self.socket.close()


def start_processes(*services: ServiceProcess, timeout: float = 120.0) -> None:
    """Start service processes side by side (neither needs the other to boot).

    Half the wall time of starting them in turn, and a generous timeout: on a
    loaded CI machine importing the service twice takes its time.
    """
    errors: list[BaseException] = []

    def start(svc: ServiceProcess) -> None:
        try:
            svc.start(timeout=timeout)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(svc,)) for svc in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for svc in services:
            svc.stop()
        raise errors[0]


def _bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def threaded_services(
    tmp: Path, *, redis_url: str, redis_prefix: str, auth: dict[str, Any] | None = None
) -> Iterator[tuple[ThreadedApp, ThreadedApp]]:
    """Both services on real sockets, served from threads of this process.

    Cheaper than subprocesses (no second interpreter, no re-import) for tests
    that need HTTP on a port but inject no process-level fault: the fuzzers
    and the gateway tests.
    """
    from auth_service.main import create_app as create_auth
    from tests.conftest import auth_settings, user_settings
    from user_service.main import create_app as create_user

    auth_srv, user_srv = ThreadedApp(_bound_socket()), ThreadedApp(_bound_socket())
    auth_app = create_auth(
        auth_settings(
            database_url=f"sqlite+aiosqlite:///{tmp}/auth.db",
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            key_dir=tmp / "keys",
            user_service_url=user_srv.url,
            **(auth or {}),
        )
    )
    user_app = create_user(
        user_settings(
            database_url=f"sqlite+aiosqlite:///{tmp}/user.db",
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            jwks_url=f"{auth_srv.url}/.well-known/jwks.json",
        )
    )
    try:
        auth_srv.start(auth_app)
        user_srv.start(user_app)
        yield auth_srv, user_srv
    finally:
        user_srv.stop()
        auth_srv.stop()


def register_and_login(
    auth_url: str, body: dict[str, str], *, register: bool = True
) -> tuple[str, dict[str, Any]]:
    """Register `body` (unless told not to) and log in; returns (user id, tokens)."""
    if register:
        created = httpx.post(f"{auth_url}/users", json=body, timeout=20)
        assert created.status_code == 201, created.text
    tokens = httpx.post(
        f"{auth_url}/login",
        json={"email": body["email"], "password": body["password"]},
        timeout=20,
    )
    assert tokens.status_code == 200, tokens.text
    return str(tokens.json()["user_id"]), tokens.json()


def delete_prefix(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
