"""The compose stack, really run: `make compose-test` (marker `compose`).

One stack per session, as a new user gets it: the tracked files of this
checkout copied to a temp dir (no .env, no secrets, no local data), then
`docker compose up -d` (or docker-compose 1.29) with nothing before it but
the images `make images` prepared. Every port it publishes is on 127.0.0.1
and chosen free here; the tests talk only to those, never to container
addresses. The stack is torn down with its volumes whatever happens, and a
failing wait says why, with the containers' state and logs.

A missing Docker engine is a failure, not a skip: `make compose-test` starts
dockerd when it is installed and not running.
"""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
GRAFANA_IMAGE = "grafana/grafana:11.5.2"
UP_SECONDS = 240
COMMAND_SECONDS = 300
# Debian's docker client: BuildKit built in (a docker first on PATH may lack it).
PATH = os.pathsep.join(["/usr/bin", os.environ.get("PATH", "")])


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args],
        env={**os.environ, "PATH": PATH},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def compose_command() -> list[str]:
    """`docker compose` (v2) where it exists, else docker-compose (1.29)."""
    if docker("compose", "version").returncode == 0:
        return ["docker", "compose"]
    found = shutil.which("docker-compose", path=PATH)
    if found is None:
        pytest.fail("neither `docker compose` nor docker-compose is installed (.ci/run)")
    return [found]


def checkout_copy(dest: Path) -> Path:
    """The files a clone would have: tracked and new-but-not-ignored ones."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    assert not (dest / ".env").exists()
    assert not (dest / "deploy" / "compose" / "secrets").exists()
    return dest


@dataclass
class Stack:
    directory: Path
    env: dict[str, str]
    base_url: str
    prometheus_url: str
    grafana_url: str
    services: list[str]
    has_grafana: bool
    files: tuple[str, ...] = ("docker-compose.yml", "deploy/compose/ops-ports.yml")

    def compose(
        self, *args: str, files: tuple[str, ...] | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = compose_command()
        for f in files or self.files:
            argv += ["-f", f]
        return subprocess.run(
            [*argv, *args],
            cwd=self.directory,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=COMMAND_SECONDS,
            check=False,
        )

    def diagnose(self) -> str:
        """What a failing test shows: the containers' state and their last logs."""
        ps = self.compose("ps", "-a")
        logs = self.compose("logs", "--no-color", "--tail", "60")
        return f"\n--- compose ps\n{ps.stdout}{ps.stderr}\n--- compose logs\n{logs.stdout[-15000:]}"

    def wait_until(self, what: str, ready: Callable[[], bool], seconds: float = UP_SECONDS) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(2)
        pytest.fail(f"{what}: not within {seconds:.0f} s{self.diagnose()}")

    def wait_for_gateway(self) -> None:
        def ready() -> bool:
            # Through the gateway: the auth service (its keys) and the user
            # service (401 from the service itself, not a 502 from nginx).
            jwks = httpx.get(f"{self.base_url}/.well-known/jwks.json", timeout=5)
            me = httpx.get(f"{self.base_url}/users/me", timeout=5)
            return jwks.status_code == 200 and me.status_code == 401

        self.wait_until("the gateway and the services behind it", ready)

    def up(self) -> None:
        for _ in range(3):
            result = self.compose("up", "-d", *self.services)
            if result.returncode == 0:
                return
            if "Pool overlaps" not in result.stderr:
                break
            # Another stack took the subnet between the choice and `up`.
            self.compose("down", "--remove-orphans")
            self.env |= app_network()
        pytest.fail(f"compose up failed:\n{result.stderr[-5000:]}{self.diagnose()}")


def app_network() -> dict[str, str]:
    """A /24 for the stack's `app` network that no Docker network uses now
    (the compose file fixes the gateway's address in it)."""
    used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for network_id in docker("network", "ls", "-q").stdout.split():
        subnets = docker(
            "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", network_id
        ).stdout.split()
        used += [ipaddress.ip_network(n) for n in subnets]
    for third in random.sample(range(64, 255), 191):
        candidate = ipaddress.ip_network(f"172.30.{third}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return {"IDP_APP_SUBNET": str(candidate), "IDP_GATEWAY_IP": str(candidate[10])}
    pytest.fail("no free 172.30.x.0/24 for the stack's app network")


def _port_is_free(port: int) -> None:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    except httpx.TransportError:
        return
    pytest.fail(f"port {port} answers already: another stack is running there")


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    if docker("info").returncode != 0:
        pytest.fail("no Docker engine answers (`make compose-test` starts dockerd when installed)")
    directory = checkout_copy(tmp_path_factory.mktemp("clone"))
    gateway, prometheus, grafana = free_port(), free_port(), free_port()
    for port in (gateway, prometheus, grafana):
        _port_is_free(port)
    env = {k: v for k, v in os.environ.items() if k in {"HOME", "LANG", "LC_ALL", "DOCKER_HOST"}}
    env |= {
        "PATH": PATH,
        "DOCKER_BUILDKIT": "1",
        "COMPOSE_DOCKER_CLI_BUILD": "1",
        "COMPOSE_PROJECT_NAME": f"idpct{uuid.uuid4().hex[:8]}",
        "GATEWAY_PORT": str(gateway),
        "PROMETHEUS_PORT": str(prometheus),
        "GRAFANA_PORT": str(grafana),
        **app_network(),
    }
    has_grafana = docker("image", "inspect", GRAFANA_IMAGE).returncode == 0
    all_services = [
        s
        for s in Stack(directory, env, "", "", "", [], False)
        .compose("config", "--services")
        .stdout.split()
    ]
    assert "gateway" in all_services, all_services
    # Grafana cannot be made without a registry (docs/OPERATIONS.md, "Images
    # without a registry"): without its image, everything else runs.
    services = all_services if has_grafana else [s for s in all_services if s != "grafana"]
    s = Stack(
        directory,
        env,
        base_url=f"http://localhost:{gateway}",
        prometheus_url=f"http://127.0.0.1:{prometheus}",
        grafana_url=f"http://127.0.0.1:{grafana}",
        services=services,
        has_grafana=has_grafana,
    )
    failed_before = request.session.testsfailed
    try:
        s.up()
        s.wait_for_gateway()
        yield s
    finally:
        if request.session.testsfailed > failed_before:
            print(s.diagnose())
        down = s.compose("down", "--volumes", "--remove-orphans", "--timeout", "10")
        assert down.returncode == 0, down.stderr
