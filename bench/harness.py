# ruff: noqa: S603 - the harness runs fixed argv (taskset, wrk, its own python), no input
"""The bench harness every target uses: settings, the services under test, shared measurements.

`Bench` starts and stops the processes (pinned to the server core), logs in, and runs the
measurements more than one target needs (wrk rounds with a bearer token, interleaved
comparisons, logins, refresh rotations, the in-process microbenchmarks). Each target is a
module of `bench/targets/`; `bench/run.py` is the driver.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.core import (
    TargetResult,
    WrkResult,
    paired_ratio,
    prometheus_value,
)
from bench.pg import DEFAULT_ADMIN_DSN, PgDatabases
from bench.procs import ROOT, RssSampler, Server, Wrk

RESULTS = ROOT / "bench" / "results"
ALL_TARGETS = frozenset(range(1, 9))
# Not "bench": the policy refuses passwords built from the account's own
# name or email ("Bench User", bench-...@example.com).
PASSWORD = "Steady-Passw0rd-Long!"  # noqa: S105 - a throwaway account on a throwaway DB
# How many steps above normal the latency-measuring wrk runs in target 4 (see there).
PROBE_NICENESS = -10
TITLES = {
    1: "Authenticated GET /users/{id} throughput",
    2: "Token verification time (shared/)",
    3: "Login latency and throughput",
    4: "GET /users/{id} p99 while logins saturate",
    5: "Refresh rotations/s",
    6: "Throughput with metrics + tracing on",
    7: "Memory: RSS peak and soak slope",
    8: "Revocation: logout to first 401",
}


@dataclass(frozen=True)
class Config:
    quick: bool
    seconds: float  # one wrk measurement
    warmup: float
    rounds: int  # interleaved rounds of each comparison
    connections: int
    soak_seconds: float
    revocation_trials: int
    refresh_pool: int
    load_cpu: int | None
    server_cpu: int | None
    targets: frozenset[int]
    chart: bool
    project_python: str
    bench_python: str
    # The trial configuration (SQLite files) instead of the production one
    # (PostgreSQL): `--sqlite`. Baselines stay on PostgreSQL either way.
    sqlite: bool = False

    @property
    def server_cores(self) -> int:
        return 1 if self.server_cpu is not None else os.cpu_count() or 1


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Sink(http.server.BaseHTTPRequestHandler):
    """A stand-in OTLP/HTTP collector: accepts and drops every export, so
    tracing pays its full cost (spans built, batched, serialised, sent)."""

    # Keep-alive, as a collector's receiver does: the exporter reuses its
    # connection instead of opening one per batch.
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0") or 0))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def otlp_sink() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Bench:
    """The run's state: settings, processes, results so far (`results[target]`)."""

    def __init__(self, cfg: Config, work: Path) -> None:
        self.cfg = cfg
        self.work = work
        self.raw = RESULTS / "raw"
        shutil.rmtree(self.raw, ignore_errors=True)
        self.raw.mkdir(parents=True)
        self.wrk = Wrk(cfg.load_cpu, self.raw)
        self.sampler = RssSampler()
        self.servers: list[Server] = []
        self.prefix = f"bench:{uuid.uuid4().hex[:10]}:"
        self.redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
        # Every database of the run (services and baselines) is its own, on
        # the machine's server, dropped at the end (bench/pg.py).
        self.pg = PgDatabases(os.environ.get("BENCH_PG_DSN", DEFAULT_ADMIN_DSN))
        self.http = httpx.Client(timeout=30)
        self.results: dict[int, TargetResult] = {}
        self.micro: dict[str, Any] = {}
        self.user_id = ""
        self.email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        self.rps: dict[str, list[float]] = {}

    def server(
        self,
        name: str,
        app: str,
        *,
        env: dict[str, str],
        python: str | None = None,
        cpu: int | None = None,
        factory: bool = True,
        ready: str = "/healthz",
    ) -> Server:
        srv = Server(
            name=name,
            python=python or self.cfg.project_python,
            app=app,
            port=_free_port(),
            env=env,
            log_dir=self.raw,
            cpu=cpu,
            factory=factory,
            ready_path=ready,
        )
        self.servers.append(srv)
        srv.start()
        self.sampler.watch(name, srv.pid)
        return srv

    def common_env(self) -> dict[str, str]:
        return {
            "ENV": "test",
            "REDIS_URL": self.redis_url,
            "REDIS_PREFIX": self.prefix,
            "ISSUER": "http://localhost:8000",
            "RATE_LIMIT_ENABLED": "false",  # one client hammering one account is the point
        }

    def service_database(self, service: str) -> str:
        """The DATABASE_URL of `service`: its own fresh PostgreSQL database, or
        a SQLite file in the trial configuration (`--sqlite`)."""
        if self.cfg.sqlite:
            return f"sqlite+aiosqlite:///{self.work}/{service}.db"
        self.pg.create(service)
        return self.pg.url(service)

    def database_name(self) -> str:
        return "SQLite files (trial configuration)" if self.cfg.sqlite else "PostgreSQL"

    def refresh_audit_rows(self) -> int:
        """Successful refreshes stored in the auth service's audit table."""
        sql = (
            "SELECT count(*) FROM audit_events "
            "WHERE event = 'token.refresh' AND outcome = 'success'"
        )
        if self.cfg.sqlite:
            import sqlite3

            with contextlib.closing(sqlite3.connect(self.work / "auth.db")) as conn:
                return int(conn.execute(sql).fetchone()[0])
        return int(self.pg.fetchval("auth", sql))

    def refresh_events_emitted(self) -> int:
        """Successful refreshes the auth service emitted as audit events (its own counter)."""
        text = self.http.get(f"{self.auth.url}/metrics").raise_for_status().text
        return int(
            prometheus_value(
                text, "idp_audit_events_total", {"event": "token.refresh", "outcome": "success"}
            )
        )

    def start_services(self) -> None:
        user_port = _free_port()
        self.auth = self.server(
            "auth",
            "auth_service.main:create_app",
            cpu=self.cfg.load_cpu,
            env={
                **self.common_env(),
                "DATABASE_URL": self.service_database("auth"),
                "KEY_DIR": str(self.work / "keys"),
                "USER_SERVICE_URL": f"http://127.0.0.1:{user_port}",
                # The full run outlasts the default 10 minutes; 1 h is the cap.
                "ACCESS_TOKEN_TTL_SECONDS": "3600",
                "REFRESH_TOKEN_TTL_SECONDS": "3600",
            },
        )
        self.user_env = {
            **self.common_env(),
            "DATABASE_URL": self.service_database("user"),
            "JWKS_URL": f"{self.auth.url}/.well-known/jwks.json",
            # Like for like with the baselines, which have no instrumentation;
            # target 6 measures what turning it on costs, and target 1 reports
            # the service as shipped (both on) beside it.
            "METRICS_ENABLED": "false",
            "TRACING_ENABLED": "false",
        }
        user = Server(
            name="user",
            python=self.cfg.project_python,
            app="user_service.main:create_app",
            port=user_port,
            env=self.user_env,
            log_dir=self.raw,
            cpu=self.cfg.server_cpu,
        )
        self.servers.append(user)
        user.start()
        self.sampler.watch("user", user.pid)
        self.user = user
        resp = self.http.post(
            f"{self.auth.url}/users",
            json={
                "name": "Bench User",
                "email": self.email,
                "date_of_birth": "1980-04-14",
                "job_title": "Engineer",
                "password": PASSWORD,
            },
        )
        resp.raise_for_status()
        self.user_id = resp.json()["id"]

    def login(self) -> dict[str, Any]:
        resp = self.http.post(
            f"{self.auth.url}/login", json={"email": self.email, "password": PASSWORD}
        )
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
        return body

    def stop_all(self) -> None:
        for srv in reversed(self.servers):
            srv.stop()
        self.sampler.stop()
        self.http.close()
        try:
            import redis

            client = redis.Redis.from_url(self.redis_url)
            keys = list(client.scan_iter(match=f"{self.prefix}*", count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
            client.close()
        except Exception as exc:  # cleanup must not hide the run's own error
            log(f"redis cleanup failed: {exc}")
        try:
            self.pg.drop_all()
        except Exception as exc:  # likewise
            log(f"dropping the run's databases failed: {exc}")

    def bearer_run(
        self,
        url: str,
        token: str,
        label: str,
        *,
        connections: int | None = None,
        seconds: float | None = None,
        delay_ms: float = 0.0,
        niceness: int = 0,
    ) -> WrkResult:
        env = {"BENCH_TOKEN": token, "BENCH_DELAY_MS": f"{delay_ms:.3f}"}
        return self.wrk.run(
            url,
            label=label,
            script="bearer.lua",
            connections=connections or self.cfg.connections,
            seconds=seconds or self.cfg.seconds,
            env=env,
            niceness=niceness,
        )

    def interleaved(
        self, contenders: dict[str, Callable[[float], WrkResult]]
    ) -> dict[str, list[WrkResult]]:
        """Warm each contender up, then run them round-robin `rounds` times."""
        for fn in contenders.values():
            fn(self.cfg.warmup)
        runs: dict[str, list[WrkResult]] = {name: [] for name in contenders}
        for r in range(self.cfg.rounds):
            for name, fn in contenders.items():
                result = fn(self.cfg.seconds)
                runs[name].append(result)
                log(
                    f"  round {r + 1} {name}: {result.ok_rps:.0f} req/s, p99 "
                    f"{result.p99_s * 1e3:.1f} ms, errors {result.errors}"
                )
        return runs

    def micro_run(self, args: list[str]) -> dict[str, Any]:
        cmd = [self.cfg.project_python, "-m", "bench.micro", *args]
        if self.cfg.server_cpu is not None:
            cmd = ["taskset", "-c", str(self.cfg.server_cpu), *cmd]
        out = subprocess.run(
            cmd,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def shipped_note(self) -> str:
        """Target 1's as-shipped figure (both on, spans made but not exported), if measured."""
        t1 = self.results.get(1)
        if t1 is None:
            return ""
        runs = t1.data["runs"]
        shipped = paired_ratio(
            [r["ok_rps"] for r in runs["ours as shipped"]], [r["ok_rps"] for r in runs["ours"]]
        )
        return f"as shipped without an exporter (target 1): {shipped:.2f}x of off."

    def login_run(self, label: str, connections: int, seconds: float) -> WrkResult:
        env = {"BENCH_EMAIL": self.email, "BENCH_PASSWORD": PASSWORD}
        return self.wrk.run(
            f"{self.auth.url}/login",
            label=label,
            script="login.lua",
            connections=connections,
            seconds=seconds,
            env=env,
        )

    def refresh_tokens(self, count: int) -> Path:
        tokens = [self.login()["refresh_token"] for _ in range(count)]
        path = self.work / f"refresh-{uuid.uuid4().hex[:6]}.txt"
        path.write_text("\n".join(tokens) + "\n")
        return path

    def refresh_run(
        self,
        label: str,
        seconds: float,
        *,
        connections: int = 16,
        delay_ms: float = 0.0,
        start_only: bool = False,
        server: Server | None = None,
        tokens: Path | None = None,
    ) -> Any:
        """wrk refreshing against `server` (the auth service unless named).

        `tokens`: a fixed pool file (the floor baseline accepts any token);
        otherwise a fresh pool of real refresh tokens, each used once.
        """
        url = f"{(server or self.auth).url}/token/refresh"
        pool = tokens or self.refresh_tokens(max(self.cfg.refresh_pool, connections + 8))
        env = {"BENCH_TOKENS_FILE": str(pool), "BENCH_DELAY_MS": f"{delay_ms:.3f}"}
        if start_only:
            return self.wrk.start(
                url, script="refresh.lua", connections=connections, seconds=seconds, env=env
            )
        return self.wrk.run(
            url,
            label=label,
            script="refresh.lua",
            connections=connections,
            seconds=seconds,
            env=env,
        )
