"""`make bench` target 1: authenticated GET /users/{id} vs the DB-read floor and fastapi-users.

What it measures and why: bench/README.md, "Targets, what is measured".
"""

from __future__ import annotations

from bench.core import (
    Check,
    TargetResult,
    median,
    paired_ratio,
)
from bench.harness import (
    TITLES,
    Bench,
    log,
)
from bench.procs import Server


def run(bench: Bench) -> None:
    log("target 1: authenticated profile read vs the DB-read floor and fastapi-users")
    cpu = bench.cfg.server_cpu
    # Every baseline on its own database of the same PostgreSQL server.
    floor_id_file = bench.work / "floor.id"
    floor = bench.server(
        "db-read-floor",
        "bench.baselines.db_read_floor:create_app",
        cpu=cpu,
        env={
            "BENCH_FLOOR_DSN": bench.pg.create("floor"),
            "BENCH_FLOOR_ID_FILE": str(floor_id_file),
        },
    )
    floor_url = f"{floor.url}/profiles/{floor_id_file.read_text()}"
    bench.http.get(floor_url).raise_for_status()
    fu: dict[str, tuple[Server, str]] = {}
    for alg in ("RS256", "HS256"):
        token_file = bench.work / f"fu-{alg}.token"
        bench.pg.create(f"fu_{alg}")
        srv = bench.server(
            f"fastapi-users-{alg}",
            "bench.baselines.fastapi_users_app:create_app",
            python=bench.cfg.bench_python,
            cpu=cpu,
            env={
                "BENCH_FU_DB_URL": bench.pg.url(f"fu_{alg}"),
                "BENCH_FU_TOKEN_FILE": str(token_file),
                "BENCH_FU_ALG": alg,
            },
        )
        fu[alg] = (srv, token_file.read_text())
        check = bench.http.get(
            f"{srv.url}/users/me", headers={"Authorization": f"Bearer {fu[alg][1]}"}
        )
        check.raise_for_status()
    shipped = bench.server(
        "user-shipped",
        "user_service.main:create_app",
        cpu=cpu,
        env={**bench.user_env, "METRICS_ENABLED": "true", "TRACING_ENABLED": "true"},
    )
    token = bench.login()["access_token"]
    path = f"/users/{bench.user_id}"
    ours_url = f"{bench.user.url}{path}"
    for base in (bench.user.url, shipped.url):
        bench.http.get(base + path, headers={"Authorization": f"Bearer {token}"}).raise_for_status()
    runs = bench.interleaved(
        {
            "db-read floor": lambda s: bench.bearer_run(floor_url, "", "db-floor", seconds=s),
            "fastapi-users RS256": lambda s: bench.bearer_run(
                f"{fu['RS256'][0].url}/users/me", fu["RS256"][1], "fu-rs256", seconds=s
            ),
            "fastapi-users HS256": lambda s: bench.bearer_run(
                f"{fu['HS256'][0].url}/users/me", fu["HS256"][1], "fu-hs256", seconds=s
            ),
            "ours": lambda s: bench.bearer_run(ours_url, token, "ours", seconds=s),
            "ours as shipped": lambda s: bench.bearer_run(
                shipped.url + path, token, "ours-shipped", seconds=s
            ),
        }
    )
    shipped.stop()
    med = {name: median(r.ok_rps for r in rs) for name, rs in runs.items()}
    bench.rps.update({name: [r.ok_rps for r in rs] for name, rs in runs.items()})
    for srv, _ in fu.values():
        srv.stop()
    floor.stop()
    errors = sum(r.errors for r in runs["ours"])

    def pr(a: str, b: str) -> float:
        return paired_ratio([r.ok_rps for r in runs[a]], [r.ok_rps for r in runs[b]])

    bench.results[1] = TargetResult(
        1,
        TITLES[1],
        [
            Check(
                "ours / DB-read floor",
                pr("ours", "db-read floor"),
                ">=",
                0.8,
                f"{med['ours']:.0f} vs {med['db-read floor']:.0f} req/s",
            ),
            Check(
                "ours / fastapi-users on PostgreSQL (RS256)",
                pr("ours", "fastapi-users RS256"),
                ">=",
                3.0,
                f"{med['ours']:.0f} vs {med['fastapi-users RS256']:.0f} req/s",
            ),
        ],
        note="the DB-read floor: a bare FastAPI + asyncpg app doing one SELECT by primary "
        "key (bench/baselines/db_read_floor.py); all on the same PostgreSQL server. "
        f"ours = metrics and tracing off, like the baselines; as shipped (both on, no "
        f"exporter): {med['ours as shipped']:.0f} req/s "
        f"({pr('ours as shipped', 'db-read floor'):.2f}x the DB-read floor, "
        f"{pr('ours as shipped', 'fastapi-users RS256'):.2f}x fastapi-users). "
        f"fastapi-users with its default HS256: {med['fastapi-users HS256']:.0f} req/s "
        f"(ours is {pr('ours', 'fastapi-users HS256'):.2f}x). "
        f"Non-2xx/socket errors on ours: {errors}. "
        f"{bench.cfg.connections} connections; ratios are medians of per-round ratios "
        f"over {bench.cfg.rounds} interleaved rounds, req/s are medians.",
        data={
            "median_rps": med,
            "runs": {n: [r.to_dict() for r in rs] for n, rs in runs.items()},
        },
    )
