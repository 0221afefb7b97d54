"""What goodput means, Pareto dominance over measured objectives, and which front row to deploy (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from autotune.errors import AutotuneError

PICKS = ("max-throughput", "min-latency", "balanced", "min-cost")
# Two single draws agree on throughput within 10% (the stability rule's default tolerance): so do their costs.
COST_TIE = 0.10


def goodput(metrics: Mapping[str, Any] | None, feasible: bool) -> float:
    """Throughput that counts: a measurement's requests/s if it met the SLO and the error limit, else 0."""
    if not feasible or not metrics:
        return 0.0
    return float(metrics.get("throughput_rps") or 0.0)


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """True when A is no worse than B in every objective and better in one."""
    better = False
    for x, y, d in zip(a, b, directions, strict=True):
        if d == "maximize":
            x, y = -x, -y
        if x > y:
            return False
        if x < y:
            better = True
    return better


def pareto_front(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated POINTS (duplicates all kept), in input order."""
    return [
        i for i, p in enumerate(points) if not any(dominates(q, p, directions) for j, q in enumerate(points) if j != i)
    ]


def dominance_counts(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """How many of POINTS dominate each one (0: on the front); vectorized, for the thousands a plan screens."""
    import numpy as np

    if not points:
        return []
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    x = np.asarray(points, dtype=float) * signs  # all minimized
    return [int((np.all(x <= row, axis=1) & np.any(x < row, axis=1)).sum()) for row in x]


def default_pick(objectives: Sequence[str]) -> str:
    """What `export` deploys unless told: the cheapest row of a study that minimizes cost, else the balanced one."""
    return "min-cost" if "cost_per_1k_requests" in objectives else "balanced"


def pick_index(metrics: Sequence[dict[str, Any]], how: str) -> int:
    """Which Pareto row to export: most throughput, lowest p99, closest to the ideal point, or cheapest."""
    if not metrics:
        raise AutotuneError("the Pareto set is empty: no configuration met the SLO")
    tp = [m.get("throughput_rps") or 0.0 for m in metrics]
    p99 = [m.get("latency_p99_ms") or math.inf for m in metrics]
    if how == "max-throughput":
        return max(range(len(metrics)), key=lambda i: (tp[i], -p99[i]))
    if how == "min-latency":
        return min(range(len(metrics)), key=lambda i: (p99[i], -tp[i]))
    if how == "min-cost":
        cost = [m.get("cost_per_1k_requests") or math.inf for m in metrics]
        # Costs within the protocol's tolerance of the cheapest are one draw's noise apart (at a fixed rate,
        # equal allocations differ only by the arrivals a run kept): among them, the lowest p99 wins.
        cheapest = min(cost)
        tied = [i for i in range(len(metrics)) if cost[i] <= cheapest * (1 + COST_TIE)]
        return min(tied, key=lambda i: (p99[i], cost[i], -tp[i]))
    if how == "balanced":

        def norm(v: float, lo: float, hi: float) -> float:
            return 0.0 if hi == lo else (v - lo) / (hi - lo)

        def distance(i: int) -> float:
            # Distance to the ideal point (best throughput, best p99) with both scaled to 0..1.
            gap_tp = 1.0 - norm(tp[i], min(tp), max(tp))
            gap_p99 = norm(p99[i], min(p99), max(p99))
            return math.hypot(gap_tp, gap_p99)

        return min(range(len(metrics)), key=distance)
    raise AutotuneError(f"--pick must be one of {', '.join(PICKS)} or 'trial N', got {how!r}")
