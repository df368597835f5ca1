"""How the harness starts wrk (bench/procs.py): pinned, and at the priority asked for.

Target 4 runs its latency-measuring wrk above normal priority, because at
normal priority its own wake-ups waited behind the login load on the shared
core and counted as the user service's latency (bench/README.md).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.procs import Wrk, can_raise_priority


def _prefix_then(argv: list[str], command: list[str]) -> list[str]:
    """The same launch (taskset, nice), with `command` in place of wrk and its arguments."""
    return [*argv[: argv.index("wrk")], *command]


def test_wrk_runs_at_the_niceness_asked_when_allowed(tmp_path: Path) -> None:
    argv = Wrk(cpu=0, log_dir=tmp_path).command(
        "http://127.0.0.1:1/", script="bearer.lua", connections=1, seconds=1, niceness=-10
    )
    got = subprocess.run(
        _prefix_then(argv, ["nice"]), capture_output=True, text=True, check=True
    ).stdout.strip()
    # Root (CI) may raise it; elsewhere nice warns and runs at normal priority,
    # and the harness reports that the raise was not possible.
    assert got == ("-10" if can_raise_priority(-10) else "0")


def test_wrk_is_pinned_and_unniced_by_default(tmp_path: Path) -> None:
    argv = Wrk(cpu=0, log_dir=tmp_path).command(
        "http://127.0.0.1:1/", script="bearer.lua", connections=1, seconds=1
    )
    assert "nice" not in argv
    pinned = subprocess.run(
        _prefix_then(argv, ["python3", "-c", "import os; print(sorted(os.sched_getaffinity(0)))"]),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert pinned == "[0]"
