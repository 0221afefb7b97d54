"""Pure statistics over measured latencies and windows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentiles(latencies_ms: Sequence[float]) -> dict[str, float | None]:
    """Exact p50/p90/p99/max/mean of LATENCIES_MS (sorted, not averaged); None when empty."""
    if len(latencies_ms) == 0:
        return {"p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    arr = np.asarray(latencies_ms, dtype=float)
    # 'higher' never reports a latency no request saw, and is what HDR histograms report.
    p50, p90, p99 = np.percentile(arr, [50, 90, 99], method="higher")
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(arr.max()), "mean": float(arr.mean())}


def mean_of_present(values: Sequence[float | None]) -> float | None:
    """Mean of the values that were measured (not None); None when none were."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def max_of_present(values: Sequence[float | None]) -> float | None:
    """Largest measured value (None skipped); None when none were."""
    present = [v for v in values if v is not None]
    return max(present) if present else None


def spread(values: Sequence[float]) -> float:
    """(max - min) / mean: how far apart values are, relative to their size."""
    mean = float(np.mean(values))
    if mean == 0:
        return 0.0 if max(values) == min(values) else float("inf")
    return (max(values) - min(values)) / mean


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Sample standard deviation / mean."""
    arr = np.asarray(values, dtype=float)
    if len(arr) < 2 or arr.mean() == 0:
        return 0.0
    return float(arr.std(ddof=1) / arr.mean())


def windows_agree(
    throughputs: Sequence[float],
    p99s: Sequence[float | None],
    k: int,
    tolerance: float,
    p99_tolerance: float | None = None,
) -> bool:
    """True when the last K windows agree within TOLERANCE on throughput and P99_TOLERANCE (default: same) on p99."""
    if len(throughputs) < k or len(p99s) < k:
        return False
    last_t = list(throughputs)[-k:]
    last_p = list(p99s)[-k:]
    if any(p is None for p in last_p) or min(last_t) <= 0:
        return False
    p99_tolerance = tolerance if p99_tolerance is None else p99_tolerance
    return spread(last_t) <= tolerance and spread([float(p) for p in last_p if p is not None]) <= p99_tolerance


def stable_span(windows: Sequence[dict], k: int, tolerance: float, p99_tolerance: float, need: int) -> int | None:
    """How many trailing WINDOWS form a stable aggregate, or None.

    The last m >= K windows, cut into K consecutive chunks, must agree: chunk throughputs within
    TOLERANCE, chunk tail latencies (pooled over each chunk's requests) within P99_TOLERANCE, and the
    span must hold NEED latency samples. The tail is the p99 where a chunk holds 100+ requests, else its
    p90: a 2 s window of a 20 rps model holds 40 requests, whose "p99" is their maximum, so comparing
    it would test luck, not drift. The reported p99 is pooled over the whole span, with its interval.

    Open loop (windows carry `offered_rps`), the chunks compare the share of the offer they served: Poisson
    arrivals make a 2 s window of 30 requests/s vary by ~13% on their own, which says nothing of the server.
    """
    for m in range(k, len(windows) + 1):
        span = list(windows)[-m:]
        if sum(len(w["latencies_ms"]) for w in span) < need:
            continue
        chunks = [span[i * m // k : (i + 1) * m // k] for i in range(k)]
        throughputs = [_served(c) for c in chunks]
        pooled = [[lat for w in c for lat in w["latencies_ms"]] for c in chunks]
        tail = "p99" if min(len(p) for p in pooled) >= 100 else "p90"
        tails = [percentiles(p)[tail] for p in pooled]
        if windows_agree(throughputs, tails, k, tolerance, p99_tolerance):
            return m
    return None


def _served(chunk: Sequence[dict]) -> float:
    """A chunk's throughput, or (open loop) the share of its offered rate it served."""
    throughput = sum(w["throughput_rps"] for w in chunk) / len(chunk)
    if any(w.get("offered_rps") is None for w in chunk):
        return throughput
    offered = sum(w["offered_rps"] for w in chunk) / len(chunk)
    return throughput / offered if offered > 0 else 0.0


def mean_ci95(values: Sequence[float]) -> tuple[float, float] | None:
    """95% Student-t interval for the mean of VALUES (window throughputs as batch means); None below 2."""
    from scipy import stats

    arr = np.asarray(values, dtype=float)
    if len(arr) < 2:
        return None
    half = float(stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / np.sqrt(len(arr)))
    return float(arr.mean() - half), float(arr.mean() + half)


def quantile_ci95(latencies: Sequence[float], q: float = 0.99) -> tuple[float, float] | None:
    """Distribution-free 95% interval for the Q-quantile: order statistics at binomial ranks.

    Exact for independent samples, with no assumption on the latency distribution's shape (latencies are
    skewed and often bimodal, so normal-theory intervals would mislead). The upper bound is the largest
    sample when too few samples lie above the quantile: the interval then says how little is known.
    """
    from scipy import stats

    arr = np.sort(np.asarray(latencies, dtype=float))
    n = len(arr)
    if n == 0:
        return None
    lo_rank = int(stats.binom.ppf(0.025, n, q))  # 0-based index of the lower order statistic
    hi_rank = int(stats.binom.ppf(0.975, n, q)) + 1
    return float(arr[max(0, min(lo_rank, n - 1))]), float(arr[min(hi_rank, n - 1)])


def round_figure(x: float) -> float:
    """Three decimals, or four significant digits below one (a cost per request is a small number)."""
    return round(x, 3) if abs(x) >= 1 or x == 0 else float(f"{x:.4g}")
