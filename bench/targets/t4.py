"""`make bench` target 4: GET /users/{id} p99 while logins saturate the auth service.

What it measures and why: bench/README.md, "Targets, what is measured".
"""

from __future__ import annotations

import time

from bench.core import (
    Check,
    TargetResult,
    WrkResult,
    median,
    paired_ratio,
)
from bench.harness import (
    PASSWORD,
    PROBE_NICENESS,
    TITLES,
    Bench,
    log,
)
from bench.procs import ROOT, can_raise_priority


def run(bench: Bench) -> None:
    log("target 4: profile-read p99 idle vs while logins saturate the auth service")
    token = bench.login()["access_token"]
    url = f"{bench.user.url}/users/{bench.user_id}"
    conns = 4
    # The measuring wrk shares the load core with the auth service and the
    # login wrk. At normal priority its own wake-ups queue behind theirs,
    # and that wait was counted as the user service's latency (bench/README.md,
    # target 4). Raised, it measures the service; normal is reported beside it.
    raised = PROBE_NICENESS if can_raise_priority(PROBE_NICENESS) else 0
    priorities = (raised, 0) if raised else (0,)
    bench.bearer_run(url, token, "p99-warmup", connections=conns, seconds=bench.cfg.warmup)
    runs: dict[int, tuple[list[WrkResult], list[WrkResult]]] = {n: ([], []) for n in priorities}
    for r in range(bench.cfg.rounds):
        for n in priorities:
            idle, loaded = runs[n]
            idle.append(
                bench.bearer_run(url, token, f"p99-idle-n{n}-{r}", connections=conns, niceness=n)
            )
            logins = bench.wrk.start(
                f"{bench.auth.url}/login",
                script="login.lua",
                connections=8,
                seconds=bench.cfg.seconds + 2,
                env={
                    "BENCH_EMAIL": bench.email,
                    "BENCH_PASSWORD": PASSWORD,
                    "BENCH_WRK_DIR": str(ROOT / "bench" / "wrk"),
                },
            )
            time.sleep(1.0)  # let the hash queue fill before measuring
            loaded.append(
                bench.bearer_run(url, token, f"p99-loaded-n{n}-{r}", connections=conns, niceness=n)
            )
            login_result = bench.wrk.finish(logins, f"p99-logins-n{n}-{r}")
            log(
                f"  round {r + 1}, measuring wrk at nice {n}: idle p99 "
                f"{idle[-1].p99_s * 1e3:.2f} ms, loaded p99 {loaded[-1].p99_s * 1e3:.2f} ms, "
                f"logins {login_result.ok_rps:.1f}/s"
            )

    def summary(n: int) -> tuple[float, float, float]:
        idle, loaded = runs[n]
        return (
            paired_ratio([r.p99_s for r in loaded], [r.p99_s for r in idle]),
            median(r.p99_s for r in loaded),
            median(r.p99_s for r in idle),
        )

    value, p_loaded, p_idle = summary(priorities[0])
    if raised:
        plain, plain_loaded, plain_idle = summary(0)
        probe = (
            f"the measuring wrk runs at nice {raised}, above the login load on the "
            f"shared core; at normal priority it saw {plain_loaded * 1e3:.2f} ms vs "
            f"{plain_idle * 1e3:.2f} ms ({plain:.2f}x), its own scheduling wait included"
        )
    else:
        probe = (
            "the measuring wrk could not run at a raised priority (needs root or "
            "CAP_SYS_NICE), so these p99s include its own scheduling wait"
        )
    bench.results[4] = TargetResult(
        4,
        TITLES[4],
        [
            Check(
                "p99 under login load / p99 idle",
                value,
                "<=",
                2.0,
                f"{p_loaded * 1e3:.2f} ms vs {p_idle * 1e3:.2f} ms",
            )
        ],
        note=f"user service on the server core, {conns} connections; the auth service "
        f"(hashing in its bounded thread pool) and both wrk processes share the load core; "
        f"{probe}.",
        data={
            "niceness": {
                str(n): {
                    "idle": [r.to_dict() for r in runs[n][0]],
                    "loaded": [r.to_dict() for r in runs[n][1]],
                }
                for n in priorities
            }
        },
    )
