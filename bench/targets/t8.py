"""`make bench` target 8: revocation: POST /logout to the first 401 at the user service.

What it measures and why: bench/README.md, "Targets, what is measured".
"""

from __future__ import annotations

import time

import httpx

from bench.core import (
    Check,
    TargetResult,
    percentile,
)
from bench.harness import (
    TITLES,
    Bench,
    log,
)


def run(bench: Bench) -> None:
    n = bench.cfg.revocation_trials
    log(f"target 8: logout to first 401 at the user service, {n} trials")
    tokens = [bench.login()["access_token"] for _ in range(n)]
    url = f"{bench.user.url}/users/{bench.user_id}"
    delays, late_200s = [], 0
    with httpx.Client(timeout=10) as auth, httpx.Client(timeout=10) as user:
        for token in tokens:
            headers = {"Authorization": f"Bearer {token}"}
            user.get(url, headers=headers).raise_for_status()
            t0 = time.perf_counter()
            auth.post(f"{bench.auth.url}/logout", headers=headers).raise_for_status()
            while True:
                status = user.get(url, headers=headers).status_code
                if status == 401:
                    break
                if status != 200:
                    raise RuntimeError(f"unexpected status {status} after logout")
                late_200s += 1
                if time.perf_counter() - t0 > 5:
                    raise RuntimeError("session still accepted 5 s after logout")
            delays.append(time.perf_counter() - t0)
    p50, p99, worst = percentile(delays, 50), percentile(delays, 99), max(delays)
    bench.results[8] = TargetResult(
        8,
        TITLES[8],
        [
            Check(
                "p99 logout → first 401 (ms)",
                p99 * 1e3,
                "<=",
                100.0,
                f"p50 {p50 * 1e3:.1f} ms, max {worst * 1e3:.1f} ms, n={n}",
            )
        ],
        note="measured from sending POST /logout (its round trip included) to the 401; "
        f"'well under one second' is read as <= 100 ms; {late_200s} requests were still "
        f"accepted after the logout was sent; both services on {bench.database_name()}.",
        data={"delays_s": delays, "late_200s": late_200s},
    )
