"""Confidence intervals, ratio verdicts, interleaving and the confirmed-front rules (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from autotune.compare import interleaved_order
from autotune.confirm import candidates, summary_line
from autotune.load.stats import mean_ci95, quantile_ci95, stable_span
from autotune.significance import Verdict, compare_metric, overall, ratio_ci95


def test_abba_order_alternates_rounds_so_drift_weighs_on_both_sides():
    assert interleaved_order(2, 4) == [0, 1, 1, 0, 0, 1, 1, 0]
    assert interleaved_order(3, 2) == [0, 1, 2, 2, 1, 0]


def test_a_clear_gain_in_throughput_is_better_and_in_p99_is_worse():
    a = [100.0, 103.0, 98.0]
    b = [150.0, 148.0, 155.0]
    assert compare_metric("throughput_rps", a, b).verdict is Verdict.better
    assert compare_metric("latency_p99_ms", a, b).verdict is Verdict.worse  # higher latency is worse
    ratio, lo, hi = ratio_ci95(a, b)  # type: ignore[misc]
    assert lo < ratio < hi and lo > 1.3 and hi < 1.7


def test_overlapping_figures_are_no_significant_difference():
    m = compare_metric("throughput_rps", [100.0, 90.0, 110.0], [105.0, 95.0, 99.0])
    assert m.verdict is Verdict.no_significant_difference
    assert m.ratio_ci95 is not None and m.ratio_ci95[0] < 1 < m.ratio_ci95[1]


def test_one_figure_a_side_gives_no_verdict():
    assert compare_metric("throughput_rps", [100.0], [200.0, 210.0]).verdict is Verdict.not_measured


def test_a_over_a_false_positives_stay_near_five_percent():
    # Same distribution both sides, multiplicative noise of 15% (ResNet50's run-to-run CV here).
    rng = np.random.default_rng(7)
    runs = 4000
    hits = sum(
        compare_metric("throughput_rps", rng.lognormal(4, 0.15, 3), rng.lognormal(4, 0.15, 3)).verdict.significant
        for _ in range(runs)
    )
    assert 0.03 < hits / runs < 0.07


def test_a_halving_is_detected_in_nearly_every_run():
    rng = np.random.default_rng(8)
    found = sum(
        compare_metric("throughput_rps", rng.lognormal(4, 0.15, 3), rng.lognormal(4 + np.log(0.5), 0.15, 3)).verdict
        is Verdict.worse
        for _ in range(500)
    )
    assert found / 500 > 0.9


def test_overall_verdict_needs_a_gain_without_a_loss():
    better = compare_metric("throughput_rps", [100, 101, 99], [150, 151, 149])
    worse_p99 = compare_metric("latency_p99_ms", [10, 10.1, 9.9], [20, 20.2, 19.8])
    same_p99 = compare_metric("latency_p99_ms", [10, 12, 8], [10, 11, 9])
    objectives = ["throughput_rps", "latency_p99_ms"]
    assert overall({"throughput_rps": better, "latency_p99_ms": same_p99}, objectives) is Verdict.better
    assert overall({"throughput_rps": better, "latency_p99_ms": worse_p99}, objectives) is Verdict.mixed


def test_mean_interval_covers_the_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(2000):
        lo, hi = mean_ci95(rng.normal(100, 10, 4))  # type: ignore[misc]
        covered += lo <= 100 <= hi
    assert 0.93 < covered / 2000 < 0.97
    assert mean_ci95([5.0]) is None


def test_p99_interval_is_made_of_observed_latencies_and_covers_the_true_p99():
    rng = np.random.default_rng(2)
    true_p99 = float(np.exp(0 + 1 * 2.3263))  # lognormal(0, 1)
    covered = 0
    for _ in range(1000):
        sample = rng.lognormal(0, 1, 1000)
        lo, hi = quantile_ci95(sample)  # type: ignore[misc]
        assert lo in sample and hi in sample and lo <= hi
        covered += lo <= true_p99 <= hi
    assert covered / 1000 > 0.93


def test_p99_interval_of_few_samples_reaches_the_maximum():
    # 50 samples hold no information above their p98: the upper bound is the largest one.
    sample = list(range(1, 51))
    assert quantile_ci95(sample)[1] == 50  # type: ignore[index]


def _w(rps: float, lat: float, n: int) -> dict:
    return {"throughput_rps": rps, "latencies_ms": [lat] * n}


def test_a_stable_span_needs_agreement_and_enough_requests():
    steady = [_w(100, 10.0, 50)] * 5
    assert stable_span(steady, 3, 0.1, 0.2, 200) == 4  # 3 windows hold 150: extend to 4
    assert stable_span([_w(100, 10.0, 100)] * 5, 3, 0.1, 0.2, 200) == 3
    assert stable_span([_w(100, 10.0, 10)] * 5, 3, 0.1, 0.2, 200) is None  # never enough
    assert stable_span([_w(100, 10.0, 300), _w(100, 10.0, 300), _w(130, 10.0, 300)], 3, 0.1, 0.2, 200) is None
    slow_start = [_w(100, 30.0, 300), _w(100, 10.0, 300), _w(100, 10.0, 300)]
    assert stable_span(slow_start, 3, 0.1, 0.2, 200) is None  # p99 drifting: no agreement


def test_a_stable_span_of_a_slow_model_compares_chunk_p90s_not_window_maxima():
    # Windows of 40 requests: each one's "p99" is its slowest request, 10 or 30 ms by luck. The latency
    # distribution is not drifting, and the chunks' p90s say so.
    windows = [{"throughput_rps": 20.0, "latencies_ms": [10.0] * 39 + [10.0 + 20 * (i % 2)]} for i in range(6)]
    assert stable_span(windows, 3, 0.1, 0.2, 200) is not None
    drifting = [{"throughput_rps": 20.0, "latencies_ms": [10.0 + 5 * i] * 40} for i in range(6)]
    assert stable_span(drifting, 3, 0.1, 0.2, 200) is None


def test_open_loop_chunks_agree_on_the_share_of_the_offer_served_not_on_poisson_counts():
    # 30 requests/s in 2 s windows: arrivals alone swing the counts by +-20%; the server served them all.
    counts = [54, 70, 61, 48, 66, 58]
    served_all = [{"throughput_rps": n / 2, "offered_rps": n / 2, "latencies_ms": [20.0] * n} for n in counts]
    assert stable_span(served_all, 3, 0.1, 0.2, 200) is not None
    closed_view = [{**w, "offered_rps": None} for w in served_all]
    assert stable_span(closed_view, 3, 0.1, 0.2, 200) is None  # the same counts judged as raw throughput
    falling = [{**w, "throughput_rps": w["offered_rps"] * (1 - 0.1 * i)} for i, w in enumerate(served_all)]
    assert stable_span(falling, 3, 0.1, 0.2, 200) is None  # a server falling behind is still unstable


FRONT = [
    {
        "trial": 3,
        "config": {"enable_batching": True, "max_batch_size": 8},
        "metrics": {"throughput_rps": 90.0, "latency_p99_ms": 50.0},
    },
    {
        "trial": 5,
        "config": {"enable_batching": True, "max_batch_size": 16},
        "metrics": {"throughput_rps": 120.0, "latency_p99_ms": 80.0},
    },
    {
        "trial": 7,
        "config": {"enable_batching": True, "max_batch_size": 32},
        "metrics": {"throughput_rps": 130.0, "latency_p99_ms": 200.0},
    },
    {
        "trial": 9,
        "config": {"enable_batching": True, "max_batch_size": 64},
        "metrics": {"throughput_rps": 131.0, "latency_p99_ms": 400.0},
    },
]


def test_at_most_three_distinct_candidates_are_confirmed():
    chosen = candidates(FRONT)
    assert len(chosen) == len(set(chosen)) <= 3
    assert 3 in chosen and 0 in chosen  # the most throughput and the lowest p99


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [("no_significant_difference", "the defaults are as good"), ("better", "significantly better")],
)
def test_the_summary_says_plainly_whether_the_defaults_were_beaten(verdict, expected):
    entry = {
        **FRONT[1],
        "confirmed": True,
        "verdict": verdict,
        "vs_defaults": {"throughput_rps": {"ratio": 1.04, "ratio_ci95": [0.9, 1.2]}},
    }
    line = summary_line([entry], ["throughput_rps", "latency_p99_ms"])
    assert line is not None and expected in line
    assert summary_line([{**FRONT[1], "confirmed": False}], ["throughput_rps"]) is None


def test_the_summary_names_which_metric_is_significant_and_which_is_not():
    # Seen on ResNet50: p99 significantly lower, throughput x1.09 with an interval holding 1.
    entry = {
        **FRONT[1],
        "confirmed": True,
        "verdict": "better",
        "vs_defaults": {
            "throughput_rps": {"ratio": 1.09, "ratio_ci95": [0.97, 1.22], "verdict": "no_significant_difference"},
            "latency_p99_ms": {"ratio": 0.90, "ratio_ci95": [0.82, 0.99], "verdict": "better"},
        },
    }
    line = summary_line([entry], ["throughput_rps", "latency_p99_ms"])
    assert line is not None
    assert "p99 x0.90 (95% CI 0.82-0.99) better" in line
    assert "throughput x1.09 (95% CI 0.97-1.22) not significant" in line
    assert line.index("p99") < line.index("throughput")
