# ruff: noqa: S603 - the harness runs fixed argv (taskset, wrk, its own python), no input
"""`make bench`: the benchmark suite of issue 6, every figure a same-run ratio.

    uv run --with-requirements bench/requirements.txt python -m bench [--quick]
        [--soak-seconds 300] [--targets 1,2,...] [--no-chart] [--sqlite]

By default the services run in the production configuration: PostgreSQL
(databases of the run's own on the machine's server, bench/pg.py) and the
machine's Redis (keys under a prefix of the run's own). `--sqlite` runs them
on SQLite files instead, the trial configuration, into results-sqlite.*.

CPU layout on this 2-core machine: the harness, wrk and the helper services
run on CPU 0 (the load core); the server under test runs alone on CPU 1 (the
server core). Redis is the machine's own server and is not pinned. See
bench/README.md for what each target measures and why.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.core import (
    TargetResult,
    capacity_rows,
    render_capacity,
    render_markdown,
    replace_marked,
)
from bench.harness import ALL_TARGETS, RESULTS, Bench, Config, log
from bench.procs import ROOT
from bench.targets import t1, t2, t3, t4, t5, t6, t7, t8


def run_targets(bench: Bench) -> list[TargetResult]:
    """Run the chosen targets in the order that shares started services best."""
    want = bench.cfg.targets
    bench.sampler.start()
    if want & {2, 3, 5, 7}:
        t2.run(bench)
    bench.start_services()
    steps: list[tuple[int, Callable[[Bench], None]]] = [
        (1, t1.run),
        (6, t6.run),
        (3, t3.run),
        (5, t5.run),
        (4, t4.run),
        (8, t8.run),
        (7, t7.run),
    ]
    for number, step in steps:
        if number in want:
            step(bench)
    return [bench.results[n] for n in sorted(bench.results) if n in want]


def _project_python() -> str:
    explicit = os.environ.get("BENCH_PROJECT_PYTHON")
    if explicit:
        return explicit
    venv = Path(os.environ.get("UV_PROJECT_ENVIRONMENT", ROOT / ".venv"))
    candidate = venv / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def _cpu_model() -> str:
    """The CPU's model name: RSA and Python speeds move with it, not together."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown CPU"


def _service_packages(python: str) -> str:
    """Which dependency set the services under test import (target 7's RSS depends on it)."""
    try:
        probe = subprocess.run(
            [python, "-c", "import importlib.util as u; print(u.find_spec('pytest') is None)"],
            capture_output=True,
            text=True,
            check=False,
        )
        answer = probe.stdout.strip() if probe.returncode == 0 else ""
    except OSError:
        answer = ""
    if answer == "True":
        return "the lock's runtime dependencies only, as the image ships them"
    if answer != "False":
        return "an interpreter whose packages could not be probed"
    # Dev tools change what the services load: pytest brings pygments, which
    # alembic's mako then imports (~7 MB of RSS no deployment carries).
    return "the development environment (dev tools installed: RSS reads higher than deployed)"


def configuration(cfg: Config, pg_version: str) -> str:
    """The configuration the services ran in, as the table states it."""
    if cfg.sqlite:
        return (
            "trial configuration: both services on SQLite files, Redis on this machine "
            f"(baselines on PostgreSQL {pg_version})"
        )
    return (
        f"production configuration: both services on PostgreSQL {pg_version} and Redis, "
        "on this machine, as are the baselines"
    )


def write_results(
    cfg: Config, targets: list[TargetResult], meta: dict[str, object], results: Path
) -> None:
    """The run's files under `results`, and on a full run of every target in the
    production configuration, the READMEs' table and the operations guide's capacity.

    The trial configuration writes `results-sqlite.*` beside them and publishes
    nothing: the published figures are always the production configuration's.
    """
    stem = "results-sqlite" if cfg.sqlite else "results"
    results.mkdir(parents=True, exist_ok=True)
    by_number = {t.number: t for t in targets}
    capacity = render_capacity(capacity_rows(by_number, cfg.server_cores), meta)
    payload = {
        "meta": meta,
        "targets": [t.to_dict() for t in targets],
        "capacity": capacity_rows(by_number, cfg.server_cores),
    }
    (results / f"{stem}.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    (results / f"{stem}.md").write_text(render_markdown(targets, meta))
    if not cfg.sqlite and {1, 3, 5} <= cfg.targets:
        (results / "capacity.md").write_text(capacity)
    if cfg.chart:
        from bench.report import chart

        chart(targets, meta, results / f"{stem}.png")
    if not cfg.quick and not cfg.sqlite and cfg.targets == ALL_TARGETS:
        # Only a full run of every target is what the READMEs and the
        # operations guide publish.
        section = render_markdown(targets, meta).replace("# Benchmark", "### Benchmark", 1)
        for readme in (ROOT / "README.md", ROOT / "bench" / "README.md"):
            readme.write_text(replace_marked(readme.read_text(), "results", section))
        ops = ROOT / "docs" / "OPERATIONS.md"
        ops.write_text(replace_marked(ops.read_text(), "capacity", capacity))


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(prog="python -m bench", description="make bench (issue 6)")
    p.add_argument("--quick", action="store_true", help="a fast smoke run (~1.5 min)")
    p.add_argument(
        "--soak-seconds",
        type=float,
        default=None,
        help="target 7's soak; default 300 (the issue's 5 minutes), 20 with --quick",
    )
    p.add_argument("--seconds", type=float, default=None, help="one wrk measurement")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--targets", default=",".join(map(str, sorted(ALL_TARGETS))))
    p.add_argument("--no-chart", action="store_true")
    p.add_argument(
        "--sqlite",
        action="store_true",
        help="the trial configuration: services on SQLite files (baselines stay on "
        "PostgreSQL); results go to results-sqlite.*",
    )
    a = p.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))
    load_cpu, server_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    return Config(
        quick=a.quick,
        seconds=a.seconds or (2.0 if a.quick else 8.0),
        warmup=1.0 if a.quick else 2.0,
        rounds=a.rounds or (1 if a.quick else 5),
        connections=32,
        soak_seconds=a.soak_seconds if a.soak_seconds is not None else (20.0 if a.quick else 300.0),
        revocation_trials=20 if a.quick else 200,
        refresh_pool=24 if a.quick else 32,
        load_cpu=load_cpu,
        server_cpu=server_cpu,
        targets=frozenset(int(t) for t in a.targets.split(",") if t.strip()),
        chart=not a.no_chart,
        project_python=_project_python(),
        bench_python=sys.executable,
        sqlite=a.sqlite,
    )


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    if cfg.load_cpu is not None:
        # The harness and everything it starts without taskset live on the load core.
        os.sched_setaffinity(0, {cfg.load_cpu})
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        bench = Bench(cfg, Path(tmp))
        try:
            server_version = bench.pg.server_version()
            targets = run_targets(bench)
        finally:
            bench.stop_all()
    meta = {
        "mode": "quick" if cfg.quick else "full",
        "started": started,
        "duration_s": round(time.monotonic() - t_start, 1),
        "machine": f"{platform.machine()} ({_cpu_model()}), {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {platform.platform(terse=True)}",
        "service_packages": _service_packages(cfg.project_python),
        "configuration": configuration(cfg, server_version),
        "load_cpu": cfg.load_cpu,
        "server_cpu": cfg.server_cpu,
        "seconds_per_measurement": cfg.seconds,
        "rounds": cfg.rounds,
        "connections": cfg.connections,
        "soak_seconds": cfg.soak_seconds,
    }
    write_results(cfg, targets, meta, RESULTS)
    print(render_markdown(targets, meta))
    print(render_capacity(capacity_rows({t.number: t for t in targets}, cfg.server_cores), meta))
    log(f"done in {meta['duration_s']:.0f} s; results in {RESULTS.relative_to(ROOT)}/")
    return 0
