"""What the production images install, read from the lock the way their build reads it.

service.Dockerfile runs `uv sync --frozen --no-dev`: whatever `uv export
--frozen --no-dev` lists is in every image, and only that. The embedded
development Redis (fakeredis, `make run`) and the test tools must not be:
an in-memory Redis in production would lose every session and revocation on
restart, and each extra package is attack surface.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _exported(*extra: str) -> set[str]:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is required (the images are built with it)")
    out = subprocess.run(
        [uv, "export", "--frozen", "--no-hashes", "--no-emit-project", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = set()
    for line in out.splitlines():
        match = re.match(r"([A-Za-z0-9_.-]+)", line)
        if match and not line.startswith("#"):
            names.add(match.group(1).lower().replace("_", "-"))
    return names


def test_production_images_get_no_development_redis_nor_test_tools() -> None:
    production = _exported("--no-dev")
    assert "fastapi" in production
    assert "redis" in production
    assert not {"fakeredis", "pytest", "playwright", "hypothesis"} & production


def test_make_run_still_gets_its_embedded_redis() -> None:
    # `make run` is `uv run`, which installs the dev group.
    assert "fakeredis" in _exported()
