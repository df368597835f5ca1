"""`make bench` target 7: RSS peak under load and its slope over a soak.

What it measures and why: bench/README.md, "Targets, what is measured".
"""

from __future__ import annotations

import math
import statistics

from bench.core import (
    Check,
    TargetResult,
    delay_for_rate,
    linear_slope,
    median,
)
from bench.harness import (
    TITLES,
    Bench,
    log,
)


def run(bench: Bench) -> None:
    secs = bench.cfg.soak_seconds
    log(f"target 7: {secs:.0f} s soak of both services at half their saturation rates")
    token = bench.login()["access_token"]
    url = f"{bench.user.url}/users/{bench.user_id}"
    user_sat = median(bench.rps.get("ours", [math.nan]))
    refresh_sat = getattr(bench, "refresh_sat_rps", math.nan)
    conns = 8
    soak_rates = {"user": user_sat / 2, "auth": refresh_sat / 2}
    procs = []
    bench.sampler.record(True)
    if not math.isnan(user_sat):
        d = delay_for_rate(target_rps=user_sat / 2, connections=conns, latency_s=0.0)
        procs.append(
            (
                "user",
                bench.wrk.start(
                    url,
                    script="bearer.lua",
                    connections=conns,
                    seconds=secs,
                    env={"BENCH_TOKEN": token, "BENCH_DELAY_MS": f"{d * 1e3:.3f}"},
                ),
            )
        )
    if not math.isnan(refresh_sat):
        d = delay_for_rate(target_rps=refresh_sat / 2, connections=conns, latency_s=0.0)
        procs.append(
            (
                "auth",
                bench.refresh_run(
                    "soak-auth", secs, connections=conns, delay_ms=d * 1e3, start_only=True
                ),
            )
        )
    achieved = {name: bench.wrk.finish(p, f"soak-{name}") for name, p in procs}
    bench.sampler.record(False)
    checks, data = [], {"rates": soak_rates, "achieved": {}}
    for name in ("auth", "user"):
        peak_mb = bench.sampler.peaks.get(name, 0) / 2**20
        checks.append(Check(f"{name} peak RSS (MB)", peak_mb, "<", 150.0, "whole run"))
    for name, result in achieved.items():
        series = bench.sampler.series.get(name, [])
        t0 = series[0][0] if series else 0.0
        # The first fifth is warm-up (caches, pools, allocator arenas filling).
        steady = series[len(series) // 5 :]
        xs = [(t - t0) / 60 for t, _ in steady]
        ys = [rss / 2**20 for _, rss in steady]
        slope = linear_slope(xs, ys)
        rss_mb = statistics.fmean(ys) if ys else math.nan
        # "Does not grow": the fitted growth over the soak must stay within
        # allocator noise, max(2 MB, 2 %) of the service's RSS.
        allowed = max(2.0, 0.02 * rss_mb) / (secs / 60)
        checks.append(
            Check(
                f"{name} RSS slope (MB/min)",
                slope,
                "<=",
                allowed,
                f"{result.ok_rps:.0f} req/s for {secs:.0f} s, errors {result.errors}",
            )
        )
        data["achieved"][name] = result.to_dict()
        data.setdefault("series", {})[name] = [(t - t0, rss) for t, rss in series]
    bench.results[7] = TargetResult(
        7,
        TITLES[7],
        checks,
        note=f"soak {secs:.0f} s (the issue's 5 minutes unless --soak-seconds says otherwise): "
        "GET /users/{id} on the user service and refresh rotation on the auth service, "
        "each at about half its measured saturation rate; slope fitted after the "
        f"first fifth; both services on {bench.database_name()}.",
        data=data,
    )
