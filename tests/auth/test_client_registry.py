"""The OAuth client registry and its operator CLI (`python -m auth_service.clients`)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from auth_service.services.oauth.registry import InvalidRegistration, check_redirect_uri

ROOT = Path(__file__).resolve().parents[2]


def _cli(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # No DATABASE_URL: the CLI must find the SQLite file `make run` uses
    # (./.data/auth.db relative to where it runs), as the service does.
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ENV")}
    return subprocess.run(
        [sys.executable, "-m", "auth_service.clients", *args],
        cwd=tmp_path,
        env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_create_list_delete_against_the_default_database(tmp_path: Path) -> None:
    made = _cli(
        tmp_path,
        "create",
        "--name",
        "Reports",
        "--grant",
        "authorization_code",
        "--grant",
        "refresh_token",
        "--redirect-uri",
        "https://reports.example/callback",
    )
    assert made.returncode == 0, made.stderr
    client = json.loads(made.stdout)
    secret = client["client_secret"]
    assert len(secret) >= 43  # 256 bits, base64url
    assert client["type"] == "confidential"
    assert client["scope"] == "openid profile email"
    db = tmp_path / ".data" / "auth.db"
    assert db.exists()
    with sqlite3.connect(db) as conn:
        (stored,) = conn.execute(
            "SELECT secret_hash FROM oauth_clients WHERE client_id = ?", (client["client_id"],)
        ).fetchone()
        events = [row[0] for row in conn.execute("SELECT event FROM audit_events")]
    # Only the hash is kept, never the secret itself.
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in made.stderr
    assert "client.create" in events

    listed = _cli(tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["client_id"] for r in rows] == [client["client_id"]]
    assert "client_secret" not in rows[0]
    assert secret not in listed.stdout

    gone = _cli(tmp_path, "delete", client["client_id"])
    assert gone.returncode == 0, gone.stderr
    assert json.loads(_cli(tmp_path, "list").stdout) == []
    again = _cli(tmp_path, "delete", client["client_id"])
    assert again.returncode == 1
    with sqlite3.connect(db) as conn:
        names = [row[0] for row in conn.execute("SELECT event FROM audit_events")]
    assert names.count("client.delete") == 2


def test_public_client_has_no_secret(tmp_path: Path) -> None:
    made = _cli(
        tmp_path,
        "create",
        "--name",
        "SPA",
        "--public",
        "--grant",
        "authorization_code",
        "--redirect-uri",
        "http://127.0.0.1:5173/cb",
    )
    assert made.returncode == 0, made.stderr
    body = json.loads(made.stdout)
    assert body["type"] == "public"
    assert "client_secret" not in body


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--grant", "client_credentials"], "audience"),
        (["--grant", "client_credentials", "--audience", "x", "--public"], "confidential"),
        (["--grant", "authorization_code"], "redirect-uri"),
        (["--grant", "refresh_token"], "authorization_code"),
        (["--grant", "authorization_code", "--redirect-uri", "http://app.example/cb"], "https"),
        (["--grant", "client_credentials", "--audience", "x", "--scope", 'a"b'], "scope"),
    ],
)
def test_unusable_registrations_are_refused(tmp_path: Path, args: list[str], reason: str) -> None:
    made = _cli(tmp_path, "create", "--name", "X", *args)
    assert made.returncode == 2
    assert reason in made.stderr
    assert made.stdout == ""


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/cb#frag",
        "https://user:pw@app.example/cb",
        "/relative/cb",
        "javascript:alert(1)",
        "http://app.example/cb",
        "http://localhost.evil.example/cb",
    ],
)
def test_redirect_uris_that_are_never_registered(uri: str) -> None:
    with pytest.raises(InvalidRegistration):
        check_redirect_uri(uri)


@pytest.mark.parametrize(
    "uri", ["https://app.example/cb?x=1", "http://localhost:8080/cb", "http://[::1]:9/cb"]
)
def test_redirect_uris_that_are(uri: str) -> None:
    assert check_redirect_uri(uri) == uri
