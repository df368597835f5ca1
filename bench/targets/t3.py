"""`make bench` target 3: login latency and throughput against argon2.

What it measures and why: bench/README.md, "Targets, what is measured".
"""

from __future__ import annotations

from bench.core import (
    Check,
    TargetResult,
    WrkResult,
    median,
    paired_ratio,
)
from bench.harness import (
    TITLES,
    Bench,
    log,
)
from bench.procs import pin


def run(bench: Bench) -> None:
    log("target 3: login latency at concurrency 1 and logins/s at saturation")
    pin(bench.auth.pid, bench.cfg.server_cpu)
    seconds = max(bench.cfg.seconds / 2, 2.0)
    # As many verifies before and after a round as fill about as long as the
    # round's c=1 logins (~20 ms each): a baseline sampled for a fraction of
    # a second swung more between rounds than the login p50 it divides
    # (medians of 16.4-23.5 ms against p50s of 20.5-22.6 ms, 22:19-22:56).
    verifies = max(round(seconds / 2 / 0.02), 5)
    argon2_args = ["--rounds", "0", "--argon2-rounds", str(verifies)]
    c1s: list[WrkResult] = []
    sats: list[WrkResult] = []
    bases: list[float] = []
    fastest: list[float] = []  # kept beside the verdict's medians, for comparison
    try:
        bench.login_run("login-warmup", 1, bench.cfg.warmup)
        # Interleaved: the argon2 baseline right before and right after each
        # round's logins (on the same core), so each round's ratio compares
        # two things measured under the same noise; the median round counts.
        # The baseline is the median of those verifies, like the login's p50
        # it is set against: their fastest would set a best case against a
        # typical one (on this shared machine 3-40 % apart within seconds).
        for r in range(bench.cfg.rounds):
            before = bench.micro_run(argon2_args)["argon2_samples"]
            c1s.append(bench.login_run(f"login-c1-{r}", 1, seconds))
            sats.append(bench.login_run(f"login-sat-{r}", 8, seconds))
            after = bench.micro_run(argon2_args)["argon2_samples"]
            bases.append(median([*before, *after]))
            fastest.append(min(*before, *after))
            log(
                f"  round {r + 1}: argon2 {bases[-1] * 1e3:.1f} ms, login p50 "
                f"{c1s[-1].p50_s * 1e3:.1f} ms, {sats[-1].ok_rps:.1f} logins/s"
            )
    finally:
        pin(bench.auth.pid, bench.cfg.load_cpu)
    cores = bench.cfg.server_cores
    argon2_s = median(bases)
    ceiling = cores / argon2_s
    sat_rps = median(r.ok_rps for r in sats)
    bench.login_sat_rps = sat_rps
    latency_ratio = paired_ratio([r.p50_s for r in c1s], bases)
    throughput_ratio = paired_ratio([r.ok_rps for r in sats], [cores / b for b in bases])
    errors = sum(r.errors for r in c1s + sats)
    bench.results[3] = TargetResult(
        3,
        TITLES[3],
        [
            Check(
                "login p50 at c=1 / one argon2 verify",
                latency_ratio,
                "<=",
                1.25,
                f"{median(r.p50_s for r in c1s) * 1e3:.1f} ms vs {argon2_s * 1e3:.1f} ms",
            ),
            Check(
                "logins/s at saturation / (cores / argon2 time)",
                throughput_ratio,
                ">=",
                0.8,
                f"{sat_rps:.1f}/s vs {ceiling:.1f}/s, cores={cores}",
            ),
        ],
        note=f"the auth service runs alone on the server core (cores = {cores}); "
        f"saturation with 8 connections; {bench.cfg.rounds} rounds, each with the argon2 "
        f"baseline (the median verify, like the login's p50) measured right before and "
        f"after its logins; errors {errors}. Against each round's fastest verify instead: "
        f"{paired_ratio([r.p50_s for r in c1s], fastest):.2f}x at c=1, "
        f"{paired_ratio([r.ok_rps for r in sats], [cores / f for f in fastest]):.2f}x "
        f"at saturation.",
        data={
            "c1": [r.to_dict() for r in c1s],
            "saturation": [r.to_dict() for r in sats],
            "argon2_verify_s": bases,
            "argon2_fastest_s": fastest,
        },
    )
