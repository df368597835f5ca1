"""Browser tests: the passkey page in a real Chromium against the real cluster.

One local cluster per session (deploy/local/cluster.py: nginx gateway, both
services as uvicorn processes, the machine's Redis under a key prefix of its
own, SQLite files in a temp dir) on free ports, reached as
http://localhost:<port> so that the RP ID is `localhost`, exactly as a
developer's browser sees `make run`. Chromium is Debian's /usr/bin/chromium
driven by Playwright; a CDP virtual authenticator (WebAuthn domain) stands in
for the platform authenticator.

A missing Chromium or nginx is a failure, not a skip: CI installs both
(.ci/run), and a silently skipped browser suite would prove nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.sync_api import (
    Browser,
    CDPSession,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from tests.conftest import REDIS_URL
from tests.e2e.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# A CTAP2 platform authenticator with resident keys and user verification.
PLATFORM: dict[str, Any] = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
}
CLUSTER_START_SECONDS = 90
UI_TIMEOUT_MS = 15_000
PASSWORD = "Str0ngP@ssw0rd!!"


@dataclass
class Cluster:
    base_url: str
    output: list[str] = field(default_factory=list)
    # `--data-dir`: the mail sink stores each message in its mail/ folder.
    data_dir: Path | None = None


def _pump(proc: subprocess.Popen[str], out: list[str], ready: threading.Event) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        out.append(line)
        if line.strip() == "cluster ready":
            ready.set()


@pytest.fixture(scope="module")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """The local cluster for one test module; a module's `CLUSTER_ENV` adds settings."""
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.fail("nginx is required for the browser tests (apt-get install nginx)")
    data = tmp_path_factory.mktemp("cluster")
    gateway, auth, user = free_port(), free_port(), free_port()
    prefix = f"test:browser:{uuid.uuid4().hex[:10]}:"
    origin = f"http://localhost:{gateway}"
    env = {
        **os.environ,
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": prefix,
        "ENV": "test",
        # One test client logs in many times from 127.0.0.1.
        "RATE_LIMIT_ENABLED": "false",
        "WEBAUTHN_RP_ID": "localhost",
        "WEBAUTHN_ORIGINS": origin,
        **getattr(request.module, "CLUSTER_ENV", {}),
    }
    argv = [sys.executable, str(ROOT / "deploy" / "local" / "cluster.py"), "--gateway", "nginx"]
    argv += ["--gateway-port", str(gateway), "--auth-port", str(auth), "--user-port", str(user)]
    argv += ["--data-dir", str(data), "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    out: list[str] = []
    ready = threading.Event()
    pump = threading.Thread(target=_pump, args=(proc, out, ready), daemon=True)
    pump.start()
    try:
        if not ready.wait(CLUSTER_START_SECONDS):
            pytest.fail("cluster did not start:\n" + "".join(out[-60:]))
        yield Cluster(origin, out, data)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        pump.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


# Module scope, not session: Playwright's sync API keeps an asyncio loop
# marked running in this thread until it stops, which would break every
# async test that pytest runs after the browser tests.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)")
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield b
    b.close()


class Authenticators:
    """The CDP WebAuthn domain: virtual authenticators for one page."""

    def __init__(self, cdp: CDPSession) -> None:
        self.cdp = cdp
        cdp.send("WebAuthn.enable", {"enableUI": False})
        self.current = self.add(PLATFORM)

    def add(self, options: dict[str, Any]) -> str:
        result = self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
        return str(result["authenticatorId"])

    def credentials(self) -> list[dict[str, Any]]:
        creds: list[dict[str, Any]] = self.cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": self.current}
        )["credentials"]
        return creds

    def swap(self, **changes: Any) -> None:
        """Replace the authenticator by one with other options but the same
        passkeys (Chrome allows one internal authenticator at a time)."""
        creds = self.credentials()
        self.cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": self.current})
        self.current = self.add({**PLATFORM, **changes})
        for cred in creds:
            self.cdp.send(
                "WebAuthn.addCredential", {"authenticatorId": self.current, "credential": cred}
            )


class PasskeyPage:
    """The page's controls, by id, with waits on its status and error regions."""

    def __init__(self, page: Page, authenticators: Authenticators) -> None:
        self.page = page
        self.authn = authenticators
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(m.text))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    # --- waits ---

    def expect_status(self, pattern: str) -> None:
        expect(self.page.locator("#status")).to_have_text(
            re.compile(pattern), timeout=UI_TIMEOUT_MS
        )

    def expect_error(self, pattern: str) -> None:
        expect(self.page.locator("#error")).to_have_text(re.compile(pattern), timeout=UI_TIMEOUT_MS)

    def signed_in(self) -> bool:
        return self.page.locator("#signed-in").is_visible()

    def amr(self) -> str:
        return self.page.locator("#user-amr").inner_text()

    def passkeys(self) -> list[str]:
        return self.page.locator("#passkey-list li strong").all_inner_texts()

    def codes(self) -> list[str]:
        return self.page.locator("#codes-list li").all_inner_texts()

    # --- flows ---

    def open(self) -> None:
        self.page.goto("/")
        expect(self.page.locator("#login-heading")).to_be_visible()

    def submit_registration(self, email: str, password: str = PASSWORD) -> None:
        p = self.page
        p.locator("#reg-name").fill("Jane Doe")
        p.locator("#reg-email").fill(email)
        p.locator("#reg-dob").fill("1980-04-14")
        p.locator("#reg-job").fill("Engineer")
        p.locator("#reg-password").fill(password)
        p.get_by_role("button", name="Create account").click()

    def register(self, email: str, password: str = PASSWORD) -> None:
        self.submit_registration(email, password)
        self.expect_status("Account created")

    def password_login(self, email: str, password: str = PASSWORD) -> None:
        self.page.locator("#login-email").fill(email)
        self.page.locator("#login-password").fill(password)
        self.page.get_by_role("button", name="Log in", exact=True).click()

    def add_passkey(self, label: str) -> None:
        self.page.locator("#passkey-label").fill(label)
        self.page.get_by_role("button", name="Add a passkey").click()

    def logout(self) -> None:
        self.page.get_by_role("button", name="Log out").click()
        self.expect_status("Logged out")


@pytest.fixture
def ui(browser: Browser, cluster: Cluster) -> Iterator[PasskeyPage]:
    context = browser.new_context(base_url=cluster.base_url)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    harness = PasskeyPage(page, Authenticators(context.new_cdp_session(page)))
    try:
        yield harness
    finally:
        context.close()
    violations = [m for m in harness.console if "Content Security Policy" in m]
    assert not violations, violations
    errors = [m for m in harness.console if m.startswith("pageerror")]
    assert not errors, errors


def new_email() -> str:
    return f"browser-{uuid.uuid4().hex[:10]}@example.com"
