"""Settings that would silently break a documented guarantee are refused at
start, in every mode (not only ENV=production), with a message that says why.

What is enforced (docs/ASVS.md, "Settings that weaken guarantees"):
- TOKEN_LEEWAY_SECONDS at most as long as revocation markers outlive a
  token's `exp`: otherwise a revoked session's tokens verify again once the
  marker is gone (revocation must hold, docs/CONTRACTS.md).
- JWKS_MIN_REFETCH_SECONDS at least one second: otherwise every token with a
  made-up `kid` costs a fetch from the auth service.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shared.access.revocation import MARKER_OUTLIVES_TOKEN_SECONDS
from user_service.config import UserSettings

REPO = Path(__file__).resolve().parents[2]
MODES = ["development", "test", "production"]


def _user_settings(env: str, **overrides: Any) -> UserSettings:
    values: dict[str, Any] = {"env": env}
    if env == "production":  # everything else production asks for
        values |= {
            "issuer": "https://idp.example.com",
            "docs_enabled": False,
            "database_url": "postgresql+asyncpg://idp:a-real-secret@db.internal:5432/idp",
            "redis_url": "rediss://:a-long-random-secret@redis.internal:6379/0",
        }
    return UserSettings(**(values | overrides))


@pytest.mark.parametrize("env", MODES)
def test_leeway_longer_than_the_revocation_marker_is_refused(env: str) -> None:
    longest = MARKER_OUTLIVES_TOKEN_SECONDS
    assert _user_settings(env, token_leeway_seconds=longest).token_leeway_seconds == longest
    with pytest.raises(ValidationError) as refused:
        _user_settings(env, token_leeway_seconds=longest + 1)
    message = str(refused.value)
    assert "TOKEN_LEEWAY_SECONDS" in message
    assert "revoked" in message
    assert str(longest) in message


@pytest.mark.parametrize("env", MODES)
@pytest.mark.parametrize("interval", [0, 0.5, 0.999])
def test_jwks_refetch_interval_below_one_second_is_refused(env: str, interval: float) -> None:
    assert _user_settings(env, jwks_min_refetch_seconds=1).jwks_min_refetch_seconds == 1
    with pytest.raises(ValidationError) as refused:
        _user_settings(env, jwks_min_refetch_seconds=interval)
    message = str(refused.value)
    assert "JWKS_MIN_REFETCH_SECONDS" in message
    assert "at least 1" in message


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("TOKEN_LEEWAY_SECONDS", "90", "TOKEN_LEEWAY_SECONDS"),
        ("JWKS_MIN_REFETCH_SECONDS", "0", "JWKS_MIN_REFETCH_SECONDS"),
    ],
)
def test_the_service_does_not_start_with_a_weakening_setting(
    tmp_path: Path, variable: str, value: str, says: str
) -> None:
    # The real start: uvicorn builds the app from the environment and exits.
    env = {
        **os.environ,
        "ENV": "development",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/user.db",
        variable: value,
    }
    argv = [sys.executable, "-m", "uvicorn", "--factory", "user_service.main:create_app"]
    started = subprocess.Popen(
        [*argv, "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Generous: a loaded machine imports slowly; a refused start exits early.
    try:
        _, stderr = started.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        started.kill()
        started.communicate()
        pytest.fail(f"the service started with {variable}={value}")
    assert started.returncode != 0
    assert says in stderr
