"""Real service processes for cross-service tests: start, stop, restart."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port free now, and never one this process handed out before:
    the kernel may offer a released port again, and a test picks several
    before any server binds them."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


class ServiceProcess:
    """One service under uvicorn on a fixed port, so it can be stopped and
    brought back where its peers expect it."""

    def __init__(self, name: str, port: int, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = port
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--factory",
                    f"{self.name}.main:create_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                    "--no-proxy-headers",
                ],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Pair:
    """The auth and user services as processes, wired to each other."""

    def __init__(self, tmp: Path, redis_url: str, redis_prefix: str, **extra: str) -> None:
        self.auth_port, self.user_port = free_port(), free_port()
        common = {
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": redis_prefix,
            "ISSUER": "http://localhost:8000",
            "ENV": "test",
            "RATE_LIMIT_ENABLED": "false",
            **extra,
        }
        self.auth = ServiceProcess(
            "auth_service",
            self.auth_port,
            {
                **common,
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/auth.db",
                "KEY_DIR": str(tmp / "keys"),
                "USER_SERVICE_URL": f"http://127.0.0.1:{self.user_port}",
            },
            tmp,
        )
        self.user = ServiceProcess(
            "user_service",
            self.user_port,
            {
                **common,
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/user.db",
                "JWKS_URL": f"http://127.0.0.1:{self.auth_port}/.well-known/jwks.json",
            },
            tmp,
        )

    def start(self) -> None:
        self.auth.start()
        self.user.start()

    def stop(self) -> None:
        self.user.stop()
        self.auth.stop()
