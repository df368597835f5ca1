"""The chart of a run (bench/results/results.png); matplotlib is a bench-only dependency."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.core import TargetResult

_CAP = 10.0


def margin(value: float, op: str, threshold: float) -> float:
    """How far a check is from its goal, as a factor where > 1 passes.

    value/threshold for "at least" goals, threshold/value for "at most" ones,
    so every bar reads the same way on one axis.
    """
    if math.isnan(value) or threshold == 0:
        return math.nan
    if op in (">=", ">"):
        return value / threshold if value > 0 else math.nan
    # "At most" goals met with room to spare (a flat or falling RSS slope is
    # 0 or negative) are drawn at the chart's cap instead of vanishing.
    return threshold / value if value > 0 else _CAP


def chart(targets: Sequence[TargetResult], meta: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{t.number}. {c.label}", c) for t in targets for c in t.checks]
    soak = next((t for t in targets if t.number == 7), None)
    series = (soak.data.get("series") or {}) if soak else {}
    fig, axes = plt.subplots(
        1 + bool(series),
        1,
        figsize=(10, 0.45 * len(rows) + 2.5 + 3 * bool(series)),
        gridspec_kw={"height_ratios": [max(len(rows), 1), 6][: 1 + bool(series)]},
        squeeze=False,
    )
    ax = axes[0][0]
    labels, values, colors = [], [], []
    for label, c in reversed(rows):
        m = margin(c.value, c.op, c.threshold)
        labels.append(label)
        values.append(0 if math.isnan(m) else min(m, _CAP))
        colors.append({"pass": "#2e7d32", "fail": "#c62828"}.get(c.verdict, "#9e9e9e"))
    ax.barh(labels, values, color=colors)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("margin against the goal (> 1 meets it; log scale)")
    ax.set_title(f"make bench — {meta.get('mode')} run, {meta.get('started')}")
    for y, (v, (_, c)) in enumerate(zip(values, reversed(rows), strict=True)):
        if v:
            ax.text(v, y, f"  {c.value:.3g} {c.op} {c.threshold:.3g}", va="center", fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    if series:
        ax2 = axes[1][0]
        for name, points in series.items():
            ax2.plot([t / 60 for t, _ in points], [r / 2**20 for _, r in points], label=name)
        ax2.axhline(150, color="#c62828", linestyle="--", linewidth=1, label="150 MB limit")
        ax2.set_xlabel("soak time (min)")
        ax2.set_ylabel("RSS (MB)")
        ax2.set_ylim(bottom=0)
        ax2.legend(fontsize=8)
        ax2.set_title("Target 7: RSS during the soak")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
