"""A client cannot pick its own address under `make run` (deploy/local/cluster.py).

The real services run behind the real gateway (nginx, and the Python
fallback), started by the launcher exactly as `make run` does. A client that
sends a fresh `X-Forwarded-For` (and `X-Real-IP`, `Forwarded`) with every
wrong password must still hit the per-(account, network) limit, through the
gateway and straight on the auth port, and the audit trail must name the
real peer (docs/RATE_LIMITS.md, docs/SECURITY_TEAM.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import REDIS_URL, new_user
from tests.e2e.processes import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "deploy" / "local" / "cluster.py"
ATTEMPTS = 25
# The default per-(account, network) limit (docs/RATE_LIMITS.md).
ACCOUNT_NETWORK_LIMIT = 10
FORGED_PREFIX = "203.0.113."


class Cluster:
    """cluster.py with the real service apps; its output lines collected."""

    def __init__(self, tmp_path: Path, gateway: str, redis_prefix: str) -> None:
        self.ports = {name: free_port() for name in ("gateway", "auth", "user")}
        argv = [sys.executable, str(CLUSTER), "--gateway", gateway]
        argv += ["--data-dir", str(tmp_path / "data")]
        for name, port in self.ports.items():
            argv += [f"--{name}-port", str(port)]
        env = {
            **os.environ,
            "REDIS_URL": REDIS_URL,
            "REDIS_PREFIX": redis_prefix,
            "ENV": "development",
            "RATE_LIMIT_ENABLED": "true",
            "AUDIT_STDOUT": "true",
            "TRACING_ENABLED": "false",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "",
            "LOG_LEVEL": "WARNING",
        }
        # Whatever the environment says, the launcher decides whom to believe.
        env.pop("TRUSTED_PROXIES", None)
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.strip() == "cluster ready":
                self.ready.set()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def audit_events(self, event: str) -> list[dict[str, object]]:
        """Audit records of type `event` the auth service wrote to stdout."""
        found = []
        for line in list(self.lines):
            _, _, text = line.partition("| ")
            if not text.startswith("{"):
                continue
            try:
                record = json.loads(text)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == event:
                found.append(record)
        return found

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture(params=["nginx", "python"])
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    started = Cluster(tmp_path, request.param, prefix)
    try:
        assert started.ready.wait(90), "no 'cluster ready':\n" + "\n".join(started.lines)
        yield started
    finally:
        started.close()
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


def _forged(i: int) -> dict[str, str]:
    forged = f"{FORGED_PREFIX}{i + 1}"
    return {
        "X-Forwarded-For": forged,
        "X-Real-IP": forged,
        "Forwarded": f"for={forged}",
    }


def _guess_with_forged_addresses(base: str, email: str) -> list[httpx.Response]:
    guess = {"email": email, "password": "Wrong-password-1234"}
    with httpx.Client(base_url=base, trust_env=False, timeout=30) as client:
        return [client.post("/login", json=guess, headers=_forged(i)) for i in range(ATTEMPTS)]


def _assert_throttled(responses: list[httpx.Response]) -> None:
    codes = [r.status_code for r in responses]
    # Every guess gets an answer; at most the limit reach the password check,
    # and the service itself refuses the rest (not only the gateway's outer
    # limit, whose problem type is about:blank).
    assert set(codes) <= {401, 429}, codes
    assert codes.count(401) <= ACCOUNT_NETWORK_LIMIT, codes
    first = codes.index(429)
    assert set(codes[first:]) == {429}, codes
    assert responses[first].json()["type"] == "urn:idp:problem:rate-limited"


def test_forged_forwarding_headers_do_not_dodge_login_limits(running: Cluster) -> None:
    with httpx.Client(base_url=running.url("gateway"), trust_env=False, timeout=30) as client:
        victims = [new_user(), new_user()]
        for body in victims:
            created = client.post("/users", json=body)
            assert created.status_code == 201, created.text

    through_gateway = _guess_with_forged_addresses(running.url("gateway"), victims[0]["email"])
    _assert_throttled(through_gateway)

    # A local client that skips the gateway is not believed either.
    direct = _guess_with_forged_addresses(running.url("auth"), victims[1]["email"])
    _assert_throttled(direct)

    # The audit trail names the real peer, never a forged address.
    failures = [e for e in running.audit_events("login") if e.get("outcome") == "failure"]
    refusals = running.audit_events("rate_limited")
    assert failures, "\n".join(running.lines[-40:])
    assert refusals, "\n".join(running.lines[-40:])
    assert {e["client_ip"] for e in failures + refusals} == {"127.0.0.1"}
