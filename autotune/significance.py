"""Is B really different from A, and by enough to matter? Ratio intervals, verdicts, power and corrections (pure).

Throughput and latency vary multiplicatively between servers (a slower host slows everything by a
factor), so comparisons are made on logarithms and reported as ratios B/A: a ratio and its inverse get
the same verdict. Two analyses:

- paired (compare, confirmation): runs are measured in interleaved A/B pairs, and the interval is
  Student's t over the log-ratios of the pairs. A slow drift of the host weighs on both runs of a pair
  alike and cancels in its ratio;
- unpaired (independent grids): Welch's t on the two sides' logs, since a config may be noisier.

A metric's verdict (see `classify`): `better`/`worse` only when the interval excludes 1 *and* the ratio
is beyond a practical threshold (criterion.rs's noise threshold); `equivalent` when the whole interval
lies within +-the threshold (two one-sided tests, each at alpha/2); `inconclusive` otherwise. Every
metric carries `mde`: the smallest change this many runs would detect with 80% power.

Sequential stopping (`StopRule`): pairs are added until the 95% interval of every objective's ratio is
narrower than +-precision, between 3 and 10 pairs (defaults), a rule fixed before any data. Stopping on
an interval's width picks runs whose spread happened to be small, so a plain 95% t interval at the stop
covers only about 91.5% (worst case over noise levels, normal noise, 3..10 pairs, +-5%). The price is
paid up front: after a sequential stop, verdicts use the interval at level 1 - alpha/2, whose coverage
tests/test_significance.py checks by simulation to stay at or above 1 - alpha (within simulation error).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from functools import lru_cache
from statistics import median
from typing import Any

import numpy as np

ALPHA = 0.05
POWER = 0.80
DEFAULT_MIN_EFFECT = 0.02  # criterion.rs's noise threshold is 1-2%: smaller changes are not worth a verdict
DEFAULT_PRECISION = 0.05
MIN_REPEATS = 3  # two figures give a variance from two points: an interval narrow by luck
DEFAULT_MAX_REPEATS = 10

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
    """What a comparison may claim about B against A, per metric or overall."""

    better = "better"
    worse = "worse"
    equivalent = "equivalent"  # the whole interval within +-the practical threshold
    inconclusive = "inconclusive"  # neither shown: more runs might tell
    mixed = "mixed"  # better on one objective, worse on another: a trade-off
    infeasible = "infeasible"  # re-measured, it breaks the study's SLO or limits: no gain counts
    not_measured = "not_measured"

    @property
    def significant(self) -> bool:
        return self in (Verdict.better, Verdict.worse)


@lru_cache(maxsize=4096)
def _t(q: float, df: float) -> float:
    """Student's t quantile (cached: simulations ask for the same few thousands of times)."""
    from scipy import stats

    return float(stats.t.ppf(q, df))


@dataclass(frozen=True)
class Estimate:
    """A log-ratio log(B/A) with its standard error and degrees of freedom."""

    log_ratio: float
    se: float
    df: float
    method: str  # "paired" or "welch"
    n_a: int
    n_b: int

    @property
    def ratio(self) -> float:
        return math.exp(self.log_ratio)

    def half_width(self, alpha: float = ALPHA) -> float:
        """Half the two-sided (1 - alpha) interval, on the log scale."""
        return _t(1 - alpha / 2, self.df) * self.se

    def interval(self, alpha: float = ALPHA) -> tuple[float, float]:
        """The two-sided (1 - alpha) interval of the ratio B/A."""
        h = self.half_width(alpha)
        return math.exp(self.log_ratio - h), math.exp(self.log_ratio + h)

    def p_value(self) -> float:
        """Two-sided p-value of 'no difference'."""
        from scipy import stats

        if self.se == 0:
            return 1.0 if self.log_ratio == 0 else 0.0
        return float(2 * stats.t.sf(abs(self.log_ratio) / self.se, self.df))

    def mde(self, alpha: float = ALPHA, power: float = POWER) -> float:
        """Smallest change (as a fraction: 0.12 = 12%) detected with POWER at ALPHA, given this spread."""
        return math.exp((_t(1 - alpha / 2, self.df) + _t(power, self.df)) * self.se) - 1


def _logs(values: Sequence[float | None]) -> np.ndarray:
    return np.log([float(x) for x in values if x is not None and x > 0])


def welch_estimate(a: Sequence[float | None], b: Sequence[float | None]) -> Estimate | None:
    """log(geometric mean B / geometric mean A) by Welch's t; None without two positive figures a side."""
    la, lb = _logs(a), _logs(b)
    if len(la) < 2 or len(lb) < 2:
        return None
    va, vb = la.var(ddof=1) / len(la), lb.var(ddof=1) / len(lb)
    # Welch-Satterthwaite degrees of freedom (the pooled count when both sides are flat).
    df = (va + vb) ** 2 / (va**2 / (len(la) - 1) + vb**2 / (len(lb) - 1)) if va + vb > 0 else len(la) + len(lb) - 2
    return Estimate(float(lb.mean() - la.mean()), math.sqrt(va + vb), df, "welch", len(la), len(lb))


def paired_estimate(a: Sequence[float | None], b: Sequence[float | None]) -> Estimate | None:
    """Mean log-ratio of the pairs (a[i], b[i]) where both are positive; None below two such pairs."""
    if len(a) != len(b):
        raise ValueError(f"paired figures need as many A as B, got {len(a)} and {len(b)}")
    d = np.array([math.log(y / x) for x, y in zip(a, b, strict=True) if x and y and x > 0 and y > 0])
    if len(d) < 2:
        return None
    return Estimate(float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))), len(d) - 1, "paired", len(d), len(d))


def classify(est: Estimate, direction: str, min_effect: float, alpha: float = ALPHA) -> Verdict:
    """better/worse: interval excludes 1 and the ratio is beyond MIN_EFFECT; equivalent: the interval inside
    +-MIN_EFFECT; inconclusive otherwise."""
    bound = math.log(1 + min_effect)
    h = est.half_width(alpha)
    lo, hi = est.log_ratio - h, est.log_ratio + h
    if (lo > 0 or hi < 0) and abs(est.log_ratio) > bound:
        up = est.log_ratio > 0
        return Verdict.better if up == (direction == "maximize") else Verdict.worse
    if -bound <= lo and hi <= bound:
        return Verdict.equivalent
    return Verdict.inconclusive


@dataclass(frozen=True)
class MetricComparison:
    """B against A on one metric: medians, ratio B/A with its intervals, power and the verdict.

    `ratio_ci95` is the plain 95% interval; `ratio_ci` the one the verdict was read from, at level
    1 - `alpha_used` (Holm-adjusted `alpha_adjusted`, halved after a sequential stop)."""

    metric: str
    direction: str
    a_median: float | None
    b_median: float | None
    ratio: float | None
    ratio_ci95: tuple[float, float] | None
    verdict: Verdict
    n_a: int
    n_b: int
    method: str | None = None
    ratio_ci: tuple[float, float] | None = None
    p_value: float | None = None
    alpha_adjusted: float = ALPHA
    alpha_used: float = ALPHA
    min_effect: float = DEFAULT_MIN_EFFECT
    mde: float | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = self.verdict.value
        out["ratio_ci95"] = list(self.ratio_ci95) if self.ratio_ci95 else None
        out["ratio_ci"] = list(self.ratio_ci) if self.ratio_ci else None
        return out


def ratio_ci95(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float, float] | None:
    """(ratio of geometric means B/A, low, high) by Welch's t on logs; None without two positive figures a side."""
    est = welch_estimate(a, b)
    if est is None:
        return None
    lo, hi = est.interval(1 - level)
    return est.ratio, lo, hi


def compare_metric(
    metric: str,
    a: Sequence[float | None],
    b: Sequence[float | None],
    *,
    paired: bool = False,
    min_effect: float = DEFAULT_MIN_EFFECT,
    alpha: float = ALPHA,
    sequential: bool = False,
) -> MetricComparison:
    """Compare one metric's repeated figures, direction-aware (lower p99 is better).

    PAIRED: a[i] and b[i] were measured side by side (None where a run failed). ALPHA: the Holm-adjusted
    level of this test; SEQUENTIAL: the runs stopped on the interval's width, so the verdict's interval is
    taken at 1 - ALPHA/2 (see the module's docstring)."""
    direction = DIRECTIONS.get(metric, "maximize")
    xa = [float(x) for x in a if x is not None]
    xb = [float(x) for x in b if x is not None]
    ma = median(xa) if xa else None
    mb = median(xb) if xb else None
    est = paired_estimate(a, b) if paired else welch_estimate(a, b)
    used = alpha / 2 if sequential else alpha
    if est is None:
        return MetricComparison(
            metric, direction, ma, mb, None, None, Verdict.not_measured, len(xa), len(xb), None, None, None,
            alpha, used, min_effect,
        )  # fmt: skip
    return MetricComparison(
        metric,
        direction,
        ma,
        mb,
        est.ratio,
        est.interval(ALPHA),
        classify(est, direction, min_effect, used),
        est.n_a,
        est.n_b,
        est.method,
        est.interval(used),
        est.p_value(),
        alpha,
        used,
        min_effect,
        est.mde(used),
    )


def holm_alphas(p_values: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """Per test, the level Holm's step-down judges it at (the family's error rate held at ALPHA).

    Tests past the first one Holm keeps get that one's level, so an interval at 1 - level holds 1 exactly
    when Holm keeps the test."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    out = [alpha] * m
    stopped: float | None = None
    for rank, i in enumerate(order):
        level = alpha / (m - rank)
        if stopped is None and p_values[i] > level:
            stopped = level
        out[i] = stopped if stopped is not None else level
    return out


def compare_runs(
    a: Sequence[dict[str, Any] | None],
    b: Sequence[dict[str, Any] | None],
    metrics: Sequence[str],
    *,
    paired: bool = False,
    min_effects: dict[str, float] | None = None,
    alphas: dict[str, float] | None = None,
    sequential: bool = False,
) -> dict[str, MetricComparison]:
    """Per-metric comparisons of two lists of trial metrics dicts (paired: index by index, None for a failed run)."""
    effects, levels = min_effects or {}, alphas or {}

    def figures(runs: Sequence[dict[str, Any] | None], m: str) -> list[float | None]:
        return [r.get(m) if r else None for r in runs]

    return {
        m: compare_metric(
            m,
            figures(a, m),
            figures(b, m),
            paired=paired,
            min_effect=effects.get(m, DEFAULT_MIN_EFFECT),
            alpha=levels.get(m, ALPHA),
            sequential=sequential,
        )
        for m in metrics
    }


def overall(comparisons: dict[str, MetricComparison], objectives: Sequence[str]) -> Verdict:
    """B against A on the objectives: better if better on one and worse on none; equivalent if equivalent on all."""
    verdicts = [comparisons[m].verdict for m in objectives if m in comparisons]
    if Verdict.worse in verdicts and Verdict.better in verdicts:
        return Verdict.mixed
    if Verdict.worse in verdicts:
        return Verdict.worse
    if Verdict.better in verdicts:
        return Verdict.better
    if verdicts and all(v is Verdict.equivalent for v in verdicts):
        return Verdict.equivalent
    if verdicts and all(v is Verdict.not_measured for v in verdicts):
        return Verdict.not_measured
    return Verdict.inconclusive


@dataclass(frozen=True)
class StopRule:
    """When interleaved A/B measurement stops, fixed before the first run: every objective's 95% interval
    narrower than +-PRECISION, with MIN_REPEATS to MAX_REPEATS pairs; FIXED measures MAX_REPEATS, no peeking."""

    min_repeats: int = MIN_REPEATS
    max_repeats: int = DEFAULT_MAX_REPEATS
    precision: float = DEFAULT_PRECISION
    fixed: bool = False

    @classmethod
    def fixed_count(cls, repeats: int) -> StopRule:
        """REPEATS pairs exactly (the pre-issue-25 design; verdict intervals need no sequential widening)."""
        return cls(repeats, repeats, DEFAULT_PRECISION, True)

    def problem(self) -> str | None:
        """Why this rule cannot run (one line), or None."""
        if not MIN_REPEATS <= self.min_repeats <= self.max_repeats <= 50:
            return f"repeats must satisfy {MIN_REPEATS} <= min <= max <= 50, got {self.min_repeats}..{self.max_repeats}"
        if not 0 < self.precision < 1:
            return f"precision must be a fraction in (0, 1) such as 0.05, got {self.precision}"
        return None

    @property
    def sequential(self) -> bool:
        """Whether the count of runs depends on the data (then verdicts pay for it)."""
        return not self.fixed and self.min_repeats < self.max_repeats

    def precise(self, est: Estimate | None) -> bool:
        """Whether EST's 95% interval lies within ratio x/ (1 + precision) of its estimate."""
        return est is not None and est.half_width(ALPHA) <= math.log(1 + self.precision)

    def done(self, pairs: int, estimates: Sequence[Estimate | None]) -> bool:
        """After PAIRS complete pairs whose objectives are estimated as ESTIMATES: stop now?"""
        if pairs >= self.max_repeats:
            return True
        if self.fixed or pairs < self.min_repeats:
            return False
        return all(self.precise(e) for e in estimates)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
