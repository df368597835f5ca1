"""The benchmark harness's pure functions (bench/core.py): parsing, statistics, verdicts.

The benchmark itself never runs here (`make bench` runs it); these take milliseconds.
"""

from __future__ import annotations

import json
import math

import pytest

from bench.core import (
    JSON_PREFIX,
    Check,
    TargetResult,
    audit_stored_ratio,
    capacity_rows,
    delay_for_rate,
    linear_slope,
    paired_ratio,
    parse_wrk_output,
    percentile,
    prometheus_value,
    ratio,
    render_capacity,
    render_markdown,
    replace_marked,
    target_verdict,
)

WRK_TEXT = """\
Running 8s test @ http://127.0.0.1:40001/hello
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.10ms    1.02ms  21.20ms   90.12%
    Req/Sec     5.26k   210.33     5.61k    85.00%
  Latency Distribution
     50%    5.91ms
     75%    6.30ms
     90%    7.01ms
     99%   10.55ms
  41922 requests in 8.00s, 6.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:   5240.25
Transfer/sec:    767.61KB
"""


def _json_line(**overrides: object) -> str:
    data: dict[str, object] = {
        "requests": 1000,
        "duration_us": 2_000_000,
        "latency_us": {"p50": 1500, "p90": 2500, "p99": 9000, "max": 12000, "mean": 1600.5},
        "errors": {"connect": 0, "read": 0, "write": 0, "status": 10, "timeout": 0},
    }
    data.update(overrides)
    return JSON_PREFIX + json.dumps(data)


def test_parse_prefers_the_json_line_of_our_done_hook() -> None:
    result = parse_wrk_output(WRK_TEXT + _json_line() + "\n")
    assert result.requests == 1000
    assert result.rps == pytest.approx(500.0)
    assert result.ok_rps == pytest.approx(495.0)  # non-2xx are not work done
    assert result.p50_s == pytest.approx(0.0015)
    assert result.p99_s == pytest.approx(0.009)
    assert result.max_s == pytest.approx(0.012)
    assert result.errors == 10


def test_parse_falls_back_to_the_text_report() -> None:
    result = parse_wrk_output(WRK_TEXT)
    assert result.rps == pytest.approx(5240.25)
    assert result.requests == 41922
    assert result.duration_s == pytest.approx(8.0)
    assert result.p50_s == pytest.approx(0.00591)
    assert result.p99_s == pytest.approx(0.01055)
    assert result.non_2xx == 7
    assert result.socket_errors == 3
    assert math.isnan(result.max_s)


@pytest.mark.parametrize(("unit", "seconds"), [("us", 250e-6), ("ms", 0.25), ("s", 250.0)])
def test_parse_reads_every_latency_unit(unit: str, seconds: float) -> None:
    text = WRK_TEXT.replace("     99%   10.55ms", f"     99%  250.00{unit}")
    assert parse_wrk_output(text).p99_s == pytest.approx(seconds)


def test_parse_rejects_output_that_is_not_a_wrk_report() -> None:
    with pytest.raises(ValueError, match="not a wrk report"):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 201)]  # 1..200
    assert percentile(values, 50) == 100.0
    assert percentile(values, 99) == 198.0
    assert percentile(values, 100) == 200.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="pct"):
        percentile(values, 0)


def test_ratio_is_nan_when_a_side_is_missing() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(math.nan, 2.0))


def test_linear_slope() -> None:
    xs = [0.0, 1.0, 2.0, 3.0]
    assert linear_slope(xs, [10.0, 12.0, 14.0, 16.0]) == pytest.approx(2.0)
    assert linear_slope(xs, [5.0, 5.0, 5.0, 5.0]) == pytest.approx(0.0)
    assert math.isnan(linear_slope([1.0], [1.0]))
    with pytest.raises(ValueError, match="length"):
        linear_slope(xs, [1.0])


def test_delay_for_rate() -> None:
    # 8 connections at 400/s: each connection sends every 20 ms; 2 ms of it is latency.
    assert delay_for_rate(target_rps=400, connections=8, latency_s=0.002) == pytest.approx(0.018)
    assert delay_for_rate(target_rps=1e9, connections=1, latency_s=0.5) == 0.0
    with pytest.raises(ValueError, match="positive"):
        delay_for_rate(target_rps=0, connections=1, latency_s=0)


@pytest.mark.parametrize(
    ("value", "op", "threshold", "verdict"),
    [
        (0.6, ">=", 0.5, "pass"),
        (0.5, ">=", 0.5, "pass"),
        (0.49, ">=", 0.5, "fail"),
        (1.3, "<=", 1.3, "pass"),
        (1.31, "<=", 1.3, "fail"),
        (150.0, "<", 150.0, "fail"),
        (math.nan, ">=", 0.5, "n/a"),
    ],
)
def test_check_verdict(value: float, op: str, threshold: float, verdict: str) -> None:
    assert Check("x", value, op, threshold).verdict == verdict


def test_target_verdict_claims_only_what_was_measured() -> None:
    ok, bad, unknown = (
        Check("a", 1.0, ">=", 0.5),
        Check("b", 0.1, ">=", 0.5),
        Check("c", math.nan, ">=", 0.5),
    )
    assert target_verdict([ok, ok]) == "pass"
    assert target_verdict([ok, bad]) == "fail"
    assert target_verdict([ok, unknown]) == "n/a"
    assert target_verdict([bad, unknown]) == "fail"
    assert target_verdict([]) == "n/a"


def test_markdown_has_one_row_per_check_and_the_verdicts() -> None:
    targets = [
        TargetResult(1, "Throughput", [Check("ours / hello", 0.62, ">=", 0.5, "620 vs 1000")]),
        TargetResult(2, "Verify", [Check("ours / raw", 1.9, "<=", 1.3)], note="PyJWT: 4.5x raw."),
    ]
    md = render_markdown(targets, {"mode": "quick", "load_cpu": 0, "server_cpu": 1})
    assert "| 1 | Throughput | ours / hello — 620 vs 1000 | 0.62 | >= 0.50 | ✅ pass |" in md
    assert "| 2 | Verify | ours / raw | 1.90 | <= 1.30 | ❌ fail |" in md
    assert "PyJWT: 4.5x raw." in md


def test_paired_ratio_cancels_drift_between_rounds() -> None:
    # The machine got twice as fast in round 2: per-round ratios stay 0.5.
    ours, base = [100.0, 200.0, 110.0], [200.0, 400.0, 220.0]
    assert paired_ratio(ours, base) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="length"):
        paired_ratio([1.0], [1.0, 2.0])


def test_replace_marked_swaps_only_the_marked_block() -> None:
    doc = "intro\n<!-- results:start -->\nold table\n<!-- results:end -->\noutro\n"
    new = replace_marked(doc, "results", "### new\n\n| a |\n")
    assert new == "intro\n<!-- results:start -->\n### new\n\n| a |\n<!-- results:end -->\noutro\n"
    assert replace_marked(new, "results", "### new\n\n| a |") == new  # idempotent


@pytest.mark.parametrize(
    "doc",
    [
        "no markers",
        "<!-- results:end --> x <!-- results:start -->",
        "<!-- results:start --> a <!-- results:start --> b <!-- results:end -->",
    ],
)
def test_replace_marked_refuses_broken_markers(doc: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        replace_marked(doc, "results", "x")


METRICS = """\
# HELP idp_audit_events_total Audit events emitted, by event and outcome.
# TYPE idp_audit_events_total counter
idp_audit_events_total{event="login",outcome="success",service="auth"} 25.0
idp_audit_events_total{event="token.refresh",outcome="success",service="auth"} 164.0
idp_audit_events_total{event="token.refresh",outcome="failure",service="auth"} 3.0
idp_audit_events_created{event="token.refresh",outcome="success",service="auth"} 1.7e+09
idp_tokens_issued_total{kind="refresh",service="auth"} 189.0
"""


def test_prometheus_value_reads_the_matching_samples_only() -> None:
    refresh = {"event": "token.refresh", "outcome": "success"}
    assert prometheus_value(METRICS, "idp_audit_events_total", refresh) == 164.0
    # Labels not named match anything: both outcomes of token.refresh.
    assert prometheus_value(METRICS, "idp_audit_events_total", {"event": "token.refresh"}) == 167
    # A counter never incremented has no sample yet: 0, not an error.
    assert prometheus_value(METRICS, "idp_audit_events_total", {"event": "logout"}) == 0.0
    assert prometheus_value(METRICS, "idp_tokens_issued_total", {}) == 189.0


def test_audit_rows_are_counted_against_the_larger_of_emitted_and_answered() -> None:
    # The service finished rotations wrk stopped reading: all must be stored.
    assert audit_stored_ratio(stored=164, emitted=164, answered=133) == 1.0
    assert audit_stored_ratio(stored=123, emitted=164, answered=133) == pytest.approx(0.75)
    # A counter that missed events cannot hide rows missing for answered refreshes.
    assert audit_stored_ratio(stored=100, emitted=80, answered=125) == pytest.approx(0.8)
    # Nothing refreshed: nothing to claim, so the check is n/a rather than a pass.
    assert math.isnan(audit_stored_ratio(stored=0, emitted=0, answered=0))
    assert Check("x", audit_stored_ratio(stored=0, emitted=0, answered=0), ">=", 1.0).verdict == (
        "n/a"
    )


def _t(number: int, **data: object) -> TargetResult:
    return TargetResult(number, f"t{number}", [], data=dict(data))


def test_capacity_is_the_saturation_rate_per_server_core() -> None:
    targets = {
        1: _t(1, median_rps={"ours": 4000.0, "ours as shipped": 3600.0}),
        3: _t(3, saturation=[{"ok_rps": 20.0}, {"ok_rps": 24.0}, {"ok_rps": 30.0}]),
        5: _t(5, runs=[{"ok_rps": 900.0}, {"ok_rps": 700.0}]),
    }
    rows = {r["unit"]: r for r in capacity_rows(targets, cores=2)}
    assert rows["reads/s"]["per_core"] == 2000.0
    assert "1800 reads/s" in rows["reads/s"]["note"]  # as shipped, per core
    assert rows["logins/s"]["per_core"] == 12.0  # the median round
    assert rows["refreshes/s"]["per_core"] == 400.0


def test_capacity_leaves_out_what_the_run_did_not_measure() -> None:
    rows = capacity_rows({5: _t(5, runs=[{"ok_rps": 500.0}])}, cores=1)
    assert [r["unit"] for r in rows] == ["refreshes/s"]
    assert capacity_rows({}, cores=1) == []


def test_the_capacity_table_names_its_run_and_machine() -> None:
    rows = capacity_rows({5: _t(5, runs=[{"ok_rps": 512.4}])}, cores=1)
    meta = {
        "mode": "full",
        "started": "2026-12-07 06:00 UTC",
        "configuration": "production configuration: PostgreSQL 15.20",
        "machine": "x86_64 (AMD EPYC), 2 CPUs",
    }
    md = render_capacity(rows, meta)
    assert "full run, 2026-12-07 06:00 UTC, production configuration" in md
    assert "x86_64 (AMD EPYC), 2 CPUs" in md
    assert "| POST /token/refresh (rotation, RS256 sign, audit row) | 512 refreshes/s |" in md


def test_the_results_table_states_the_configuration() -> None:
    meta = {"mode": "quick", "configuration": "trial configuration: SQLite files"}
    assert "Configuration: trial configuration: SQLite files." in render_markdown([], meta)
