"""`make bench` target 5: refresh rotations/s against RSA-2048 signs/s.

What it measures and why: bench/README.md, "Targets, what is measured".
"""

from __future__ import annotations

from bench.core import (
    Check,
    TargetResult,
    WrkResult,
    median,
    ratio,
)
from bench.harness import (
    TITLES,
    Bench,
    log,
)
from bench.procs import pin


def run(bench: Bench) -> None:
    log("target 5: refresh rotations/s vs RSA-2048 signs/s on one core")
    # The floor: what a FastAPI refresh costs with nothing but its Redis
    # round trip and its sign (bench/baselines/refresh_floor.py).
    floor = bench.server(
        "refresh-floor",
        "bench.baselines.refresh_floor:app",
        cpu=bench.cfg.server_cpu,
        factory=False,
        env=bench.common_env(),
    )
    floor_tokens = bench.work / "floor-tokens.txt"
    floor_tokens.write_text("".join(f"floor-{i}\n" for i in range(64)))

    def floor_run(label: str, seconds: float) -> WrkResult:
        result: WrkResult = bench.refresh_run(label, seconds, server=floor, tokens=floor_tokens)
        return result

    pin(bench.auth.pid, bench.cfg.server_cpu)
    try:
        bench.refresh_run("refresh-warmup", bench.cfg.warmup)
        floor_run("floor-warmup", bench.cfg.warmup)
        runs, floors = [], []
        for i in range(max(bench.cfg.rounds - 1, 1)):
            runs.append(bench.refresh_run(f"refresh-{i}", bench.cfg.seconds))
            floors.append(floor_run(f"floor-{i}", bench.cfg.seconds))
    finally:
        pin(bench.auth.pid, bench.cfg.load_cpu)
        floor.stop()
    rps = median(r.ok_rps for r in runs)
    floor_rps = median(r.ok_rps for r in floors)
    signs = 1 / bench.micro["sign_raw_s"]
    bench.refresh_sat_rps = rps
    bench.results[5] = TargetResult(
        5,
        TITLES[5],
        [
            Check(
                "rotations/s / raw RSA-2048 signs/s",
                ratio(rps, signs),
                ">=",
                0.6,
                f"{rps:.0f}/s vs {signs:.0f}/s",
            )
        ],
        note=f"16 connections, pool of refresh tokens each used once; errors "
        f"{sum(r.errors for r in runs)}. The floor (bench/baselines/refresh_floor.py: a "
        f"bare FastAPI POST doing one Redis GET and one sign, on the same core) ran "
        f"{floor_rps:.0f}/s = {ratio(floor_rps, signs):.2f}x signs/s; ours is "
        f"{ratio(rps, floor_rps):.2f}x of it.",
        data={
            "runs": [r.to_dict() for r in runs],
            "floor": [r.to_dict() for r in floors],
            "signs_per_s": signs,
        },
    )
