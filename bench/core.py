"""The harness's pure functions: parsing wrk output, statistics, ratios and verdicts.

Nothing here starts a process or reads the clock, so tests/bench can check it
in milliseconds (the benchmark itself never runs under `make test`).
"""

from __future__ import annotations

import json
import math
import operator
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "Check",
    "TargetResult",
    "WrkResult",
    "audit_stored_ratio",
    "capacity_rows",
    "delay_for_rate",
    "linear_slope",
    "median",
    "paired_ratio",
    "parse_wrk_output",
    "percentile",
    "prometheus_value",
    "ratio",
    "render_capacity",
    "render_markdown",
    "replace_marked",
    "target_verdict",
]

Verdict = Literal["pass", "fail", "n/a"]

# Our wrk scripts print one line with this prefix from their done() hook: exact
# percentiles from wrk's own histogram, rather than its rounded text output.
JSON_PREFIX = "BENCH_JSON "

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_RPS = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.MULTILINE)
_NON_2XX = re.compile(r"^\s*Non-2xx or 3xx responses:\s+(\d+)", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.MULTILINE
)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h)", re.MULTILINE)
_LAT_PCT = re.compile(r"^\s+(50|75|90|99)%\s+([0-9.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class WrkResult:
    """One wrk run. Latencies in seconds; `errors` counts every failed request."""

    requests: int
    duration_s: float
    rps: float
    p50_s: float
    p90_s: float
    p99_s: float
    max_s: float
    non_2xx: int
    socket_errors: int

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    @property
    def ok_rps(self) -> float:
        """Throughput of successful requests only: errors are not work done."""
        if self.duration_s <= 0:
            return 0.0
        return max(self.requests - self.non_2xx, 0) / self.duration_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "errors": self.errors, "ok_rps": self.ok_rps}


def _seconds(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def parse_wrk_output(text: str) -> WrkResult:
    """Read a wrk run from its stdout.

    Prefers the JSON line our Lua `done()` prints (exact microsecond
    percentiles); falls back to wrk's text report with `--latency`.

    Raises:
        ValueError: neither form is present (wrk failed to start, bad script).
    """
    for line in text.splitlines():
        if line.startswith(JSON_PREFIX):
            data = json.loads(line[len(JSON_PREFIX) :])
            duration = data["duration_us"] / 1e6
            errs = data.get("errors", {})
            socket_errors = sum(
                int(errs.get(k, 0)) for k in ("connect", "read", "write", "timeout")
            )
            return WrkResult(
                requests=int(data["requests"]),
                duration_s=duration,
                rps=data["requests"] / duration if duration > 0 else 0.0,
                p50_s=data["latency_us"]["p50"] / 1e6,
                p90_s=data["latency_us"]["p90"] / 1e6,
                p99_s=data["latency_us"]["p99"] / 1e6,
                max_s=data["latency_us"]["max"] / 1e6,
                non_2xx=int(errs.get("status", 0)),
                socket_errors=socket_errors,
            )
    rps_match = _RPS.search(text)
    total = _TOTAL.search(text)
    if rps_match is None or total is None:
        raise ValueError("not a wrk report: no 'Requests/sec' line and no BENCH_JSON line")
    pct = {int(p): _seconds(v, u) for p, v, u in _LAT_PCT.findall(text)}
    non_2xx = _NON_2XX.search(text)
    sock = _SOCKET_ERRORS.search(text)
    nan = math.nan
    return WrkResult(
        requests=int(total.group(1)),
        duration_s=_seconds(total.group(2), total.group(3)),
        rps=float(rps_match.group(1)),
        p50_s=pct.get(50, nan),
        p90_s=pct.get(90, nan),
        p99_s=pct.get(99, nan),
        max_s=nan,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(map(int, sock.groups())) if sock else 0,
    )


def median(values: Iterable[float]) -> float:
    data = [v for v in values if not math.isnan(v)]
    return statistics.median(data) if data else math.nan


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: the reported value was observed)."""
    if not values:
        return math.nan
    if not 0 < pct <= 100:
        raise ValueError(f"expected 0 < pct <= 100, got {pct}")
    ordered = sorted(values)
    rank = max(math.ceil(pct / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when either is missing or the denominator is 0."""
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median of per-round ratios of two interleaved series.

    Each round measures both sides seconds apart, so a ratio within a round
    cancels the machine's drift between rounds, which a ratio of two medians
    taken from different rounds does not.
    """
    if len(numerators) != len(denominators):
        raise ValueError("series differ in length")
    return median(ratio(n, d) for n, d in zip(numerators, denominators, strict=True))


def linear_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (e.g. RSS bytes per second)."""
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    if len(xs) < 2:
        return math.nan
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return math.nan
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def delay_for_rate(*, target_rps: float, connections: int, latency_s: float) -> float:
    """Per-request think time (seconds) so that `connections` closed-loop
    connections make about `target_rps` requests per second (wrk has no rate
    option; its Lua `delay()` hook waits this long before each request)."""
    if target_rps <= 0 or connections <= 0:
        raise ValueError("expected a positive rate and connection count")
    return max(connections / target_rps - latency_s, 0.0)


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
    ">": operator.gt,
}


@dataclass(frozen=True)
class Check:
    """One comparison of a target: `value op threshold`, e.g. 0.62 >= 0.5."""

    label: str
    value: float
    op: str
    threshold: float
    detail: str = ""

    @property
    def verdict(self) -> Verdict:
        if math.isnan(self.value):
            return "n/a"
        return "pass" if _OPS[self.op](self.value, self.threshold) else "fail"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


@dataclass
class TargetResult:
    number: int
    title: str
    checks: list[Check] = field(default_factory=list)
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        return target_verdict(self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "title": self.title,
            "verdict": self.verdict,
            "checks": [c.to_dict() for c in self.checks],
            "note": self.note,
            "data": self.data,
        }


def target_verdict(checks: Sequence[Check]) -> Verdict:
    """fail if any check fails; n/a if nothing could be measured; else pass.

    A target with some checks unmeasured and none failed is n/a, not pass:
    a verdict claims only what was measured.
    """
    verdicts = [c.verdict for c in checks]
    if "fail" in verdicts:
        return "fail"
    if not verdicts or "n/a" in verdicts:
        return "n/a"
    return "pass"


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "—"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


_MARK = {"pass": "✅ pass", "fail": "❌ fail", "n/a": "· n/a"}


def render_markdown(targets: Sequence[TargetResult], meta: dict[str, Any]) -> str:
    """The results table: one row per check, the target's verdict on its first row."""
    lines = [
        f"# Benchmark results ({meta.get('mode', 'full')} run, {meta.get('started', '')})",
        "",
        f"Machine: {meta.get('machine', '')}. Load generator on CPU {meta.get('load_cpu', '?')}, "
        f"server under test on CPU {meta.get('server_cpu', '?')}. Ratios are against "
        "baselines measured in this same run."
        + (
            f" Services run from {meta['service_packages']}."
            if meta.get("service_packages")
            else ""
        )
        + (f" Configuration: {meta['configuration']}." if meta.get("configuration") else ""),
        "",
        "| # | target | measured | ratio / value | goal | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for t in targets:
        if not t.checks:
            lines.append(
                f"| {t.number} | {t.title} | {t.note or 'not measured'} | — | — | "
                f"{_MARK[t.verdict]} |"
            )
            continue
        for i, c in enumerate(t.checks):
            first = i == 0
            lines.append(
                f"| {t.number if first else ''} | {t.title if first else ''} | {c.label}"
                f"{' — ' + c.detail if c.detail else ''} | {_fmt(c.value)} | {c.op} "
                f"{_fmt(c.threshold)} | {_MARK[c.verdict]} |"
            )
    notes = [f"- **{t.number}.** {t.note}" for t in targets if t.note and t.checks]
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines) + "\n"


def replace_marked(document: str, marker: str, body: str) -> str:
    """`document` with the text between `<!-- {marker}:start -->` and
    `<!-- {marker}:end -->` replaced by `body` (the markers stay).

    Raises:
        ValueError: the markers are missing, repeated or out of order.
    """
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    if document.count(start) != 1 or document.count(end) != 1:
        raise ValueError(f"expected one {start} and one {end}")
    head, rest = document.split(start)
    if end not in rest:
        raise ValueError(f"expected {end} after {start}")
    _, tail = rest.split(end)
    return f"{head}{start}\n{body.strip()}\n{end}{tail}"


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def prometheus_value(text: str, name: str, labels: dict[str, str]) -> float:
    """The sum of the samples of `name` in a Prometheus text exposition whose
    labels include `labels` (0 when none match: a counter never incremented)."""
    total = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match.group(1) != name:
            continue
        got = dict(_LABEL.findall(match.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


def audit_stored_ratio(*, stored: int, emitted: int, answered: int) -> float:
    """Refresh audit rows stored over refreshes done; 1.0 = every one is a row.

    Refreshes done is the larger of what the service emitted (its own
    counter) and what clients saw succeed: the service may finish a few
    rotations whose responses wrk no longer read (connections closed at the
    end of a run), so its counter can exceed wrk's count; both must be in
    the table. NaN when nothing was refreshed (nothing to claim).
    """
    done = max(emitted, answered)
    return stored / done if done > 0 else math.nan


def capacity_rows(targets: dict[int, TargetResult], cores: int) -> list[dict[str, Any]]:
    """Per-core capacity from the run's saturation figures (targets 1, 3, 5).

    Each service ran alone on `cores` server cores in those targets, so per
    core is the measured rate over `cores`. Rows whose target did not run
    are left out.
    """
    rows: list[dict[str, Any]] = []
    t1, t3, t5 = targets.get(1), targets.get(3), targets.get(5)
    if t1 is not None:
        med = t1.data.get("median_rps", {})
        rows.append(
            {
                "path": "GET /users/{id} (verify + revocation + profile read)",
                "per_core": med.get("ours", math.nan) / cores,
                "unit": "reads/s",
                "note": "metrics and tracing off; as shipped (both on, no exporter): "
                f"{_fmt(med.get('ours as shipped', math.nan) / cores)} reads/s",
            }
        )
    if t3 is not None:
        sat = median(r["ok_rps"] for r in t3.data.get("saturation", []))
        rows.append(
            {
                "path": "POST /login (password, argon2id verify)",
                "per_core": sat / cores,
                "unit": "logins/s",
                "note": "argon2 bound, as designed",
            }
        )
    if t5 is not None:
        rot = median(r["ok_rps"] for r in t5.data.get("runs", []))
        rows.append(
            {
                "path": "POST /token/refresh (rotation, RS256 sign, audit row)",
                "per_core": rot / cores,
                "unit": "refreshes/s",
                "note": "every rotation's audit event stored in the database",
            }
        )
    return rows


def render_capacity(rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The capacity table docs/OPERATIONS.md quotes, with the run it comes from."""
    lines = [
        f"Measured by `make bench` ({meta.get('mode', 'full')} run, {meta.get('started', '')}, "
        f"{meta.get('configuration', '')}) on {meta.get('machine', '')}: one service process "
        "alone on one core, the load generator on another. A replica is one such process "
        "(one uvicorn worker uses one core), so these are the rates per replica.",
        "",
        "| path | per replica (one core) | note |",
        "|---|---|---|",
    ]
    lines += [f"| {r['path']} | {_fmt(r['per_core'])} {r['unit']} | {r['note']} |" for r in rows]
    return "\n".join(lines) + "\n"
