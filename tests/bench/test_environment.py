"""What a results table says about the run's environment (bench/run.py).

Target 7's RSS depends on which packages the services import: a development
environment (pytest, hence pygments, which alembic's mako imports) reads
~7 MB higher than a deployment. The table says which set a run used.
"""

from __future__ import annotations

import platform
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


def test_an_interpreter_that_cannot_be_probed_is_not_called_either(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-python"
    assert _service_packages(str(missing)) == "an interpreter whose packages could not be probed"


def test_the_cpu_model_is_the_one_proc_cpuinfo_names() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    names = [
        line.partition(":")[2].strip()
        for line in cpuinfo.read_text().splitlines()
        if line.startswith("model name")
    ]
    # Without a "model name" line (some ARM kernels) the platform's answer stands in.
    expected = names[0] if names else (platform.processor() or "unknown CPU")
    assert _cpu_model() == expected


def test_the_table_says_which_package_set_ran_when_the_run_recorded_it() -> None:
    meta: dict[str, object] = {"mode": "full", "machine": "x86_64", "load_cpu": 0, "server_cpu": 1}
    # Results written before the package set was recorded still render.
    assert "Services run from" not in render_markdown([], meta)
    meta["service_packages"] = "the lock's runtime dependencies only, as the image ships them"
    assert (
        "Services run from the lock's runtime dependencies only, as the image ships them."
        in render_markdown([], meta)
    )
