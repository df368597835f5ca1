"""`make bench` target 5: refresh rotations/s against the refresh floor, every audit row stored.

What it measures and why: bench/README.md, "Targets, what is measured".
"""

from __future__ import annotations

import time

from bench.core import (
    Check,
    TargetResult,
    WrkResult,
    audit_stored_ratio,
    median,
    paired_ratio,
    ratio,
)
from bench.harness import (
    TITLES,
    Bench,
    log,
)
from bench.procs import pin

# How long the audit writer may take to flush its last batch after the load.
AUDIT_FLUSH_SECONDS = 15.0


def run(bench: Bench) -> None:
    log("target 5: refresh rotations/s vs the refresh floor on one core")
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
        warmup = bench.refresh_run("refresh-warmup", bench.cfg.warmup)
        floor_run("floor-warmup", bench.cfg.warmup)
        runs, floors = [], []
        # As many pairs as every other target's rounds: a verdict on two
        # pairs was the mean of two, and one noisy round decided it.
        for i in range(bench.cfg.rounds):
            runs.append(bench.refresh_run(f"refresh-{i}", bench.cfg.seconds))
            floors.append(floor_run(f"floor-{i}", bench.cfg.seconds))
    finally:
        pin(bench.auth.pid, bench.cfg.load_cpu)
        floor.stop()
    rps = median(r.ok_rps for r in runs)
    floor_rps = median(r.ok_rps for r in floors)
    signs = 1 / bench.micro["sign_raw_s"]
    bench.refresh_sat_rps = rps
    # Durability: every rotation's audit event must be a row in the auth
    # service's database, not just a line in a queue. Only target 5 has
    # refreshed so far (the soak runs later), so the service's own counter
    # of emitted events and wrk's 2xx count cover the same rotations.
    answered = sum(r.requests - r.non_2xx for r in [warmup, *runs])
    emitted = bench.refresh_events_emitted()
    deadline = time.monotonic() + AUDIT_FLUSH_SECONDS
    stored = bench.refresh_audit_rows()
    while audit_stored_ratio(stored=stored, emitted=emitted, answered=answered) < 1:
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
        stored = bench.refresh_audit_rows()
    stored_ratio = audit_stored_ratio(stored=stored, emitted=emitted, answered=answered)
    database = "SQLite" if bench.cfg.sqlite else "PostgreSQL"
    bench.results[5] = TargetResult(
        5,
        TITLES[5],
        [
            Check(
                "rotations/s / refresh floor",
                paired_ratio([r.ok_rps for r in runs], [r.ok_rps for r in floors]),
                ">=",
                0.6,
                f"{rps:.0f}/s vs {floor_rps:.0f}/s",
            ),
            Check(
                f"refresh audit rows in {database} / refreshes done",
                stored_ratio,
                ">=",
                1.0,
                f"{stored} rows stored, {emitted} events emitted, {answered} refreshes answered",
            ),
        ],
        note=f"16 connections, pool of refresh tokens each used once; errors "
        f"{sum(r.errors for r in runs)}; ratio = median of per-round ratios over "
        f"{len(runs)} interleaved rounds. The refresh floor (a bare FastAPI POST doing one Redis "
        "round trip and one RS256 sign, bench/baselines/refresh_floor.py, on the same core) "
        f"ran {floor_rps:.0f}/s, {ratio(floor_rps, signs):.2f}x raw RSA-2048 signs/s "
        f"({signs:.0f}/s); ours {ratio(rps, signs):.2f}x. Refreshes done = the larger of the "
        "service's idp_audit_events counter (token.refresh, success) and wrk's 2xx count; rows "
        "counted in the auth service's audit_events table after the load.",
        data={
            "runs": [r.to_dict() for r in runs],
            "floor": [r.to_dict() for r in floors],
            "signs_per_s": signs,
            "audit": {"stored": stored, "emitted": emitted, "answered": answered},
        },
    )
