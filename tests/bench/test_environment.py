"""What a results table says about the run's environment (bench/run.py).

Target 7's RSS depends on which packages the services import: a development
environment (pytest, hence pygments, which alembic's mako imports) reads
~7 MB higher than a deployment. The table says which set a run used.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.core import render_markdown
from bench.run import _cpu_model, _service_packages


def test_a_development_interpreter_is_reported_as_such() -> None:
    # This interpreter runs pytest, so the dev tools are installed.
    assert _service_packages(sys.executable).startswith("the development environment")


def test_an_interpreter_without_dev_tools_is_reported_as_runtime_only(tmp_path: Path) -> None:
    # -S: no site-packages, so pytest cannot be found, as in `uv sync --no-dev`.
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    python.chmod(0o755)
    assert _service_packages(str(python)) == (
        "the lock's runtime dependencies only, as the image ships them"
    )


def test_the_table_names_the_cpu_and_the_package_set() -> None:
    meta = {
        "mode": "full",
        "machine": f"x86_64 ({_cpu_model()})",
        "load_cpu": 0,
        "server_cpu": 1,
        "service_packages": "the lock's runtime dependencies only, as the image ships them",
    }
    md = render_markdown([], meta)
    assert _cpu_model()  # a name, or "unknown CPU" where /proc/cpuinfo has none
    assert f"x86_64 ({_cpu_model()})" in md
    assert "Services run from the lock's runtime dependencies only" in md
