"""`api.http`, the first client's own file, run against `make run`'s cluster
(the real cluster script, real nginx, real services, real Redis)."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pyotp
import pytest

from tests.conftest import REDIS_URL
from tests.e2e.processes import ROOT, free_port
from tests.e2e.rest_client import Runner, parse

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["nginx", "python"])
def cluster_base(
    request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str
) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "REDIS_URL": REDIS_URL, "REDIS_PREFIX": redis_prefix}
    proc = subprocess.Popen(
        [
            sys.executable,
            "deploy/local/cluster.py",
            "--gateway",
            request.param,
            "--gateway-port",
            str(port),
            "--auth-port",
            str(free_port()),
            "--user-port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout or []], daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("cluster not ready in 60 s:\n" + "".join(seen[-40:]))
            seen.append(line)
            if "cluster ready" in line:
                break
            assert proc.poll() is None, "cluster exited:\n" + "".join(seen[-40:])
        yield f"http://localhost:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def test_api_http_walks_every_endpoint(cluster_base: str, tmp_path: Path) -> None:
    variables, requests = parse((ROOT / "api.http").read_text())
    assert variables["base"] == "http://localhost:8000"  # the file users run, unchanged
    variables["base"] = cluster_base
    # The client credentials the file asks for, made as its comment says:
    # with the operator CLI, against the cluster's database.
    app = _create_client(tmp_path / "data")
    variables["clientId"], variables["clientSecret"] = app["client_id"], app["client_secret"]
    with httpx.Client(timeout=20) as client:
        runner = Runner(variables, client)
        for req in requests:
            resp = runner.send(req)
            assert resp.status_code < 500, (req.title, resp.status_code, resp.text)
            if req.expect:
                assert resp.status_code in req.expect, (req.title, resp.status_code, resp.text)
        introspected = runner.responses["introspection"].json()
        assert introspected["active"] is True
        assert introspected["sub"] == app["client_id"]
        assert introspected["scope"] == "reports:read"
        # The seed's first three steps, on a fresh cluster: 201, 200, 200.
        assert runner.responses["register"].status_code == 201
        # A second run of the register request answers 409: the email exists.
        assert runner.send(requests[0]).status_code == 409
        # The TOTP confirmation with the code an app would show for the
        # enrolled secret, as its comment says; then a login with the next
        # code, and the removal that login allows.
        app = pyotp.TOTP(runner.responses["totpenrol"].json()["secret"])
        confirm = next(r for r in requests if r.url.endswith("/totp/confirm"))
        # The walk revoked pklogin's session (POST /revoke): a fresh login
        # confirms the enrolment it started.
        fresh = runner.send(requests[1]).json()["access_token"]
        confirmed = runner.send(
            replace(
                confirm,
                headers={**confirm.headers, "Authorization": f"Bearer {fresh}"},
                body=confirm.body.replace(_APP_CODE, app.now()),
            )
        )
        assert confirmed.status_code == 201, confirmed.text
        assert confirmed.json()["recovery_codes"]
        pending = runner.send(requests[1]).json()  # the seed's login request
        assert pending["methods"] == ["totp"], pending
        tokens = client.post(
            f"{cluster_base}/login/mfa",
            json={"mfa_token": pending["mfa_token"], "totp": app.at(time.time() + 30)},
        )
        assert tokens.status_code == 200, tokens.text
        removal = next(r for r in requests if r.method == "DELETE" and r.url.endswith("/totp"))
        bearer = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
        assert runner.send(replace(removal, headers=bearer)).status_code == 204
        # The reset request with the token taken from the mail, as its
        # comment says: the forgot request's mail is in the sink by now.
        reset = next(r for r in requests if r.url.endswith("/password/reset"))
        token = _mailed_reset_token(tmp_path / "data" / "mail")
        with_token = replace(reset, body=reset.body.replace(_PLACEHOLDER, token))
        assert runner.send(with_token).status_code == 204
        assert runner.send(with_token).status_code == 400  # once only
        # The verification request likewise, with the newest link mailed to
        # the account (the resend's, which retired the registration's).
        verify = next(r for r in requests if r.url.endswith("/email/verify"))
        token = _mailed_token(tmp_path / "data" / "mail", "verify_token", to=variables["userEmail"])
        with_token = replace(verify, body=verify.body.replace(_VERIFY_PLACEHOLDER, token))
        assert runner.send(with_token).status_code == 204
        assert runner.send(with_token).status_code == 400  # once only


_PLACEHOLDER = "paste-the-token-from-the-mail-here"
_VERIFY_PLACEHOLDER = "paste-the-verify-token-here"
_APP_CODE = "app-code-here"


def _create_client(data_dir: Path) -> dict[str, str]:
    """`python -m auth_service.clients create`, with the file's own arguments."""
    import json

    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{data_dir}/auth.db"}
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "auth_service.clients",
            "create",
            "--name",
            "Reports",
            "--grant",
            "client_credentials",
            "--audience",
            "reports",
            "--scope",
            "reports:read",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    client: dict[str, str] = json.loads(made.stdout)
    return client


def _mailed_reset_token(mail_dir: Path, timeout: float = 10.0) -> str:
    """The newest reset token in the sink, found the way api.http says (grep)."""
    return _mailed_token(mail_dir, "reset_token", timeout=timeout)


def _mailed_token(
    mail_dir: Path, parameter: str, *, to: str | None = None, timeout: float = 10.0
) -> str:
    """The newest `parameter` token in the sink (in mails to `to`, if given)."""
    pattern = re.compile(parameter.encode() + rb"=([A-Za-z0-9_-]+)")
    deadline = time.monotonic() + timeout
    while True:
        found = [
            m.group(1)
            for path in sorted(mail_dir.glob("*.eml"))
            if mail_dir.exists() and (to is None or f"To: {to}".encode() in path.read_bytes())
            for m in pattern.finditer(path.read_bytes())
        ]
        if found:
            return found[-1].decode()
        assert time.monotonic() < deadline, f"no {parameter} mail in {mail_dir}"
        time.sleep(0.1)
