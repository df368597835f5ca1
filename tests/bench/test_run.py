"""What a run writes where (bench/run.py): the production configuration is the
default and the only one published; `--sqlite` is the labelled trial one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.core import Check, TargetResult
from bench.run import configuration, parse_args, write_results


def _targets() -> list[TargetResult]:
    return [
        TargetResult(
            1,
            "reads",
            [Check("ours / DB-read floor", 0.9, ">=", 0.8)],
            data={"median_rps": {"ours": 900.0, "ours as shipped": 800.0}},
        ),
        TargetResult(3, "logins", [], data={"saturation": [{"ok_rps": 30.0}]}),
        TargetResult(5, "refresh", [], data={"runs": [{"ok_rps": 600.0}]}),
    ]


def test_postgresql_is_the_default_and_sqlite_an_option() -> None:
    assert parse_args(["--quick"]).sqlite is False
    cfg = parse_args(["--quick", "--sqlite"])
    assert cfg.sqlite is True
    assert configuration(cfg, "15.20").startswith("trial configuration: both services on SQLite")
    assert configuration(parse_args([]), "15.20").startswith(
        "production configuration: both services on PostgreSQL 15.20 and Redis"
    )


def test_a_run_writes_its_results_and_the_capacity_table(tmp_path: Path) -> None:
    cfg = parse_args(["--quick", "--no-chart", "--targets", "1,3,5"])
    write_results(cfg, _targets(), {"mode": "quick", "started": "now"}, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "capacity.md",
        "results.json",
        "results.md",
    ]
    payload = json.loads((tmp_path / "results.json").read_text())
    per_core = {r["unit"]: r["per_core"] for r in payload["capacity"]}
    cores = cfg.server_cores
    assert per_core == {
        "reads/s": 900.0 / cores,
        "logins/s": 30.0 / cores,
        "refreshes/s": 600.0 / cores,
    }
    assert "| POST /login (password, argon2id verify) |" in (tmp_path / "capacity.md").read_text()


@pytest.mark.parametrize("args", [["--targets", "1,5"], ["--targets", "1,3,5", "--sqlite"]])
def test_no_capacity_table_without_all_three_rates_on_postgresql(
    tmp_path: Path, args: list[str]
) -> None:
    cfg = parse_args(["--quick", "--no-chart", *args])
    write_results(cfg, _targets(), {"mode": "quick"}, tmp_path)
    assert not (tmp_path / "capacity.md").exists()


def test_the_trial_configuration_writes_files_of_its_own(tmp_path: Path) -> None:
    cfg = parse_args(["--quick", "--no-chart", "--sqlite"])
    write_results(cfg, _targets(), {"mode": "quick"}, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "results-sqlite.json",
        "results-sqlite.md",
    ]
