"""Is B really different from A? Ratio intervals and verdicts over repeated measurements (pure).

Each side is a handful of figures, one per fresh server. Throughput and latency vary
multiplicatively between servers (a slower host slows everything by a factor), so the
comparison is made on logarithms: Welch's t interval for the difference of mean logs,
exponentiated, is a 95% interval for the ratio of geometric means B/A. Welch, because
a config can be noisier than the defaults; logs, so a ratio and its inverse get the same
verdict. A verdict is only claimed when the interval excludes 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from statistics import median
from typing import Any

import numpy as np

# Which way is better for each metric a comparison reports.
DIRECTIONS: dict[str, str] = {
    "throughput_rps": "maximize",
    "latency_p50_ms": "minimize",
    "latency_p99_ms": "minimize",
    "cpu_cores": "minimize",
    "rss_mb": "minimize",
    "gpu_mem_mb": "minimize",
    "cost_per_1k_requests": "minimize",
    "load_time_s": "minimize",
}


class Verdict(StrEnum):
    """What a comparison may claim about B against A on one metric."""

    better = "better"
    worse = "worse"
    no_significant_difference = "no_significant_difference"
    mixed = "mixed"  # significantly better on one objective, worse on another: a trade-off
    infeasible = "infeasible"  # re-measured, it breaks the study's SLO or limits: no gain counts
    not_measured = "not_measured"

    @property
    def significant(self) -> bool:
        return self in (Verdict.better, Verdict.worse)


@dataclass(frozen=True)
class MetricComparison:
    """B against A on one metric: medians, ratio B/A with its 95% interval, and the verdict."""

    metric: str
    direction: str
    a_median: float | None
    b_median: float | None
    ratio: float | None
    ratio_ci95: tuple[float, float] | None
    verdict: Verdict
    n_a: int
    n_b: int

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = self.verdict.value
        out["ratio_ci95"] = list(self.ratio_ci95) if self.ratio_ci95 else None
        return out


def ratio_ci95(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float, float] | None:
    """(ratio of geometric means B/A, low, high) by Welch's t on logs; None without two positive figures a side."""
    from scipy import stats

    la = np.log([x for x in a if x > 0])
    lb = np.log([x for x in b if x > 0])
    if len(la) < 2 or len(lb) < 2:
        return None
    va, vb = la.var(ddof=1) / len(la), lb.var(ddof=1) / len(lb)
    diff = float(lb.mean() - la.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return math.exp(diff), math.exp(diff), math.exp(diff)
    # Welch-Satterthwaite degrees of freedom.
    df = (va + vb) ** 2 / ((va**2) / (len(la) - 1) + (vb**2) / (len(lb) - 1)) if va + vb > 0 else len(la) + len(lb) - 2
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return math.exp(diff), math.exp(diff - half), math.exp(diff + half)


def compare_metric(metric: str, a: Sequence[float | None], b: Sequence[float | None]) -> MetricComparison:
    """Compare one metric's repeated figures; direction-aware (lower p99 is better)."""
    direction = DIRECTIONS.get(metric, "maximize")
    xa = [float(x) for x in a if x is not None]
    xb = [float(x) for x in b if x is not None]
    ma = median(xa) if xa else None
    mb = median(xb) if xb else None
    est = ratio_ci95(xa, xb)
    if est is None:
        return MetricComparison(metric, direction, ma, mb, None, None, Verdict.not_measured, len(xa), len(xb))
    ratio, lo, hi = est
    if lo > 1:
        verdict = Verdict.better if direction == "maximize" else Verdict.worse
    elif hi < 1:
        verdict = Verdict.worse if direction == "maximize" else Verdict.better
    else:
        verdict = Verdict.no_significant_difference
    return MetricComparison(metric, direction, ma, mb, ratio, (lo, hi), verdict, len(xa), len(xb))


def compare_runs(
    a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], metrics: Sequence[str]
) -> dict[str, MetricComparison]:
    """Per-metric comparisons of two lists of trial metrics dicts."""
    return {m: compare_metric(m, [r.get(m) for r in a], [r.get(m) for r in b]) for m in metrics}


def overall(comparisons: dict[str, MetricComparison], objectives: Sequence[str]) -> Verdict:
    """B against A on the study's objectives: better if significantly better on one and worse on none."""
    verdicts = [comparisons[m].verdict for m in objectives if m in comparisons]
    if Verdict.worse in verdicts and Verdict.better in verdicts:
        return Verdict.mixed
    if Verdict.worse in verdicts:
        return Verdict.worse
    if Verdict.better in verdicts:
        return Verdict.better
    return Verdict.no_significant_difference
