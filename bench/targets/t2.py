"""`make bench` target 2: token verification time vs the floor of any RS256 verifier (micro).

What it measures and why: bench/README.md, "Targets, what is measured".
"""

from __future__ import annotations

from bench.core import (
    Check,
    TargetResult,
    ratio,
)
from bench.harness import (
    TITLES,
    Bench,
    log,
)


def run(bench: Bench) -> None:
    log("microbenchmarks (verify, sign, argon2) on the server core")
    args = (
        ["--rounds", "15", "--argon2-rounds", "5"]
        if bench.cfg.quick
        else ["--rounds", "40", "--argon2-rounds", "15"]
    )
    bench.micro = bench.micro_run(args)
    m = bench.micro
    log(
        f"  raw verify {m['verify_raw_s'] * 1e6:.1f} us, ours {m['verify_ours_s'] * 1e6:.1f} "
        f"us (repeat {m['verify_repeat_s'] * 1e6:.2f} us), pyjwt "
        f"{m['verify_pyjwt_s'] * 1e6:.1f} us; raw sign {m['sign_raw_s'] * 1e6:.0f} "
        f"us; argon2 verify {m['argon2_verify_s'] * 1e3:.1f} ms"
    )
    # Both must hold: a token's first verification is the full cost (the
    # cache off), every later one goes through the verified-token cache.
    # The floor of any RS256 verifier of this token (bench/micro.py: split, two
    # base64 decodes, the RSA verify, one parse and validation of the
    # claims, none of the contract's checks) is the baseline: the raw RSA
    # verify alone is no verifier at all, and is reported beside it.
    bench.results[2] = TargetResult(
        2,
        TITLES[2],
        [
            Check(
                "first sight (cache off) / RS256 verify floor",
                ratio(m["verify_ours_s"], m["verify_floor_s"]),
                "<=",
                1.15,
                f"{m['verify_ours_s'] * 1e6:.1f} µs vs {m['verify_floor_s'] * 1e6:.1f} µs",
            ),
            Check(
                "repeat (verified-token cache) / RS256 verify floor",
                ratio(m["verify_repeat_s"], m["verify_floor_s"]),
                "<=",
                1.15,
                f"{m['verify_repeat_s'] * 1e6:.2f} µs vs {m['verify_floor_s'] * 1e6:.1f} µs",
            ),
        ],
        note=f"Against the raw cryptography RSA verify alone "
        f"({m['verify_raw_s'] * 1e6:.1f} µs): ours "
        f"{ratio(m['verify_ours_s'], m['verify_raw_s']):.2f}x, "
        f"the floor {ratio(m['verify_floor_s'], m['verify_raw_s']):.2f}x, PyJWT jwt.decode with "
        f"the same checks {ratio(m['verify_pyjwt_s'], m['verify_raw_s']):.2f}x. The floor "
        "(bench/micro.py) is split, two base64 decodes, the RSA verify, one parse and "
        "validation of the claims, none of the contract's checks. A repeat re-checks the key, "
        "iat, nbf and exp (shared/tokens/verify.py); revocation is checked per request.",
        data={k: v for k, v in m.items() if k != "samples"},
    )
