# ruff: noqa: S603, S607 - the harness runs fixed argv (taskset, wrk, its own python), no input
"""Processes of a benchmark run: servers under uvicorn, wrk, and an RSS sampler.

Every process is started here and stopped here by its own Popen handle; the
harness never signals anything it did not start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.core import WrkResult, parse_wrk_output

ROOT = Path(__file__).resolve().parents[1]
WRK_DIR = ROOT / "bench" / "wrk"

# Identical for every app, ours and the baselines: one uvicorn process (no
# workers), uvloop + httptools where installed, no access log (it would be
# the same fixed cost for all and only adds noise).
UVICORN_FLAGS = ("--log-level", "warning", "--no-access-log", "--no-proxy-headers")


def taskset(cpu: int | None, argv: Sequence[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else list(argv)


def can_raise_priority(niceness: int) -> bool:
    """Whether a child may run `niceness` (< 0) steps above normal (root or CAP_SYS_NICE).

    `nice` without a command prints the niceness it runs at; when raising is
    refused it warns and runs at the old one, so compare what it printed.
    """
    try:
        out = subprocess.run(
            ["nice", "-n", str(niceness), "nice"], capture_output=True, text=True, check=False
        )
    except OSError:
        return False
    return out.stdout.strip() == str(niceness)


def pin(pid: int, cpu: int | None) -> None:
    """Move a running process, all its threads included, to one CPU."""
    if cpu is not None:
        subprocess.run(
            ["taskset", "-a", "-p", "-c", str(cpu), str(pid)], check=True, capture_output=True
        )


@dataclass
class Server:
    name: str
    python: str
    app: str
    port: int
    env: Mapping[str, str]
    log_dir: Path
    cpu: int | None
    factory: bool = True
    ready_path: str = "/healthz"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        argv = [self.python, "-m", "uvicorn"]
        if self.factory:
            argv.append("--factory")
        argv += [self.app, "--host", "127.0.0.1", "--port", str(self.port), *UVICORN_FLAGS]
        log_path = self.log_dir / f"{self.name}.log"
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        with log_path.open("ab") as log:
            # taskset execs the server: the pid we hold is the server's own.
            self.proc = subprocess.Popen(
                taskset(self.cpu, argv), env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=1) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready:\n{log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


@dataclass
class RssSampler:
    """Samples the RSS of registered processes on a background thread."""

    interval: float = 0.5
    peaks: dict[str, int] = field(default_factory=dict)
    series: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    _pids: dict[str, int] = field(default_factory=dict)
    _recording: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def watch(self, name: str, pid: int) -> None:
        with self._lock:
            self._pids[name] = pid

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def record(self, on: bool) -> None:
        """Keep a time series (for the soak) in addition to the peaks."""
        with self._lock:
            if on:
                self.series = {name: [] for name in self._pids}
            self._recording = on

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            with self._lock:
                for name, pid in self._pids.items():
                    rss = rss_bytes(pid)
                    if rss is None:
                        continue
                    self.peaks[name] = max(self.peaks.get(name, 0), rss)
                    if self._recording:
                        self.series.setdefault(name, []).append((now, rss))


@dataclass
class Wrk:
    """wrk pinned to the load core; one thread, since it has one core."""

    cpu: int | None
    log_dir: Path
    runs: int = 0

    def __post_init__(self) -> None:
        if shutil.which("wrk") is None:
            raise RuntimeError("wrk is not installed: apt-get install wrk")

    def command(
        self, url: str, *, script: str, connections: int, seconds: float, niceness: int = 0
    ) -> list[str]:
        # nice execs wrk, so wrk's threads start at that niceness.
        prefix = ["nice", "-n", str(niceness)] if niceness else []
        return taskset(
            self.cpu,
            [
                *prefix,
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(round(seconds), 1)}s",
                "--timeout",
                "10s",
                "-s",
                str(WRK_DIR / script),
                url,
            ],
        )

    def start(
        self,
        url: str,
        *,
        script: str,
        connections: int,
        seconds: float,
        env: Mapping[str, str] | None = None,
        niceness: int = 0,
    ) -> subprocess.Popen[str]:
        full_env = {**os.environ, "BENCH_WRK_DIR": str(WRK_DIR), **(env or {})}
        return subprocess.Popen(
            self.command(
                url, script=script, connections=connections, seconds=seconds, niceness=niceness
            ),
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def finish(self, proc: subprocess.Popen[str], label: str) -> WrkResult:
        out, _ = proc.communicate()
        self.runs += 1
        (self.log_dir / f"wrk-{self.runs:03d}-{label}.txt").write_text(out)
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed for {label}:\n{out[-2000:]}")
        return parse_wrk_output(out)

    def run(
        self,
        url: str,
        *,
        label: str,
        script: str,
        connections: int,
        seconds: float,
        env: Mapping[str, str] | None = None,
        niceness: int = 0,
    ) -> WrkResult:
        proc = self.start(
            url, script=script, connections=connections, seconds=seconds, env=env, niceness=niceness
        )
        return self.finish(proc, label)
