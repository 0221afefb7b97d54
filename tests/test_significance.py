"""Confidence intervals, ratio verdicts, interleaving and the confirmed-front rules (pure)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autotune.compare import interleaved_order, measure_interleaved
from autotune.confirm import candidates, summary_line
from autotune.knobs import ServingConfig, is_default_config
from autotune.load.stats import mean_ci95, quantile_ci95, stable_span
from autotune.measure import TrialResult
from autotune.significance import (
    Estimate,
    StopRule,
    Verdict,
    classify,
    compare_metric,
    holm_alphas,
    overall,
    paired_estimate,
    ratio_ci95,
)


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


def test_overlapping_figures_are_inconclusive():
    m = compare_metric("throughput_rps", [100.0, 90.0, 110.0], [105.0, 95.0, 99.0])
    assert m.verdict is Verdict.inconclusive
    assert m.ratio_ci95 is not None and m.ratio_ci95[0] < 1 < m.ratio_ci95[1]


def test_one_figure_a_side_gives_no_verdict():
    assert compare_metric("throughput_rps", [100.0], [200.0, 210.0]).verdict is Verdict.not_measured


def test_a_over_a_false_positives_stay_near_five_percent():
    # Same distribution both sides, multiplicative noise of 15% (ResNet50's run-to-run CV here).
    rng = np.random.default_rng(7)
    runs = 1500
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
    flat = compare_metric("throughput_rps", [100, 100.1, 99.9], [100, 100.1, 99.9])
    objectives = ["throughput_rps", "latency_p99_ms"]
    assert overall({"throughput_rps": better, "latency_p99_ms": same_p99}, objectives) is Verdict.better
    assert overall({"throughput_rps": better, "latency_p99_ms": worse_p99}, objectives) is Verdict.mixed
    assert overall({"throughput_rps": flat, "latency_p99_ms": same_p99}, objectives) is Verdict.inconclusive
    assert overall({"throughput_rps": flat}, ["throughput_rps"]) is Verdict.equivalent


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


def _m(rps: float, p99: float) -> dict[str, float]:
    return {"throughput_rps": rps, "latency_p99_ms": p99}


def test_a_variant_on_tf_servings_default_knobs_is_a_candidate_not_the_baseline():
    defaults = ServingConfig().to_dict()
    fp16 = {"trial": 1, "config": {**defaults, "model_variant": "tflite_fp16"}, "metrics": _m(200.0, 10.0)}
    bf16 = {"trial": 2, "config": {**defaults, "mixed_precision": "bfloat16"}, "metrics": _m(150.0, 20.0)}
    baseline = {"trial": 0, "config": defaults, "metrics": _m(100.0, 5.0)}
    chosen = candidates([fp16, bf16, baseline])
    assert sorted(chosen) == [0, 1], "both measured against the defaults; the defaults never"
    assert is_default_config({}) and is_default_config({**defaults, "model_variant": "savedmodel"})


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        ("equivalent", "the defaults are as good"),
        ("better", "significantly better"),
        ("inconclusive", "no gain shown over TF Serving's defaults"),
    ],
)
def test_the_summary_says_plainly_whether_the_defaults_were_beaten(verdict, expected):
    entry = {
        **FRONT[1],
        "confirmed": True,
        "verdict": verdict,
        "vs_defaults": {"throughput_rps": {"ratio": 1.04, "ratio_ci95": [0.9, 1.2], "mde": 0.21}},
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
            "throughput_rps": {"ratio": 1.09, "ratio_ci95": [0.97, 1.22], "verdict": "inconclusive"},
            "latency_p99_ms": {"ratio": 0.90, "ratio_ci95": [0.82, 0.99], "verdict": "better"},
        },
    }
    line = summary_line([entry], ["throughput_rps", "latency_p99_ms"])
    assert line is not None
    assert "p99 x0.90 (95% CI 0.82-0.99) better" in line
    assert "throughput x1.09 (95% CI 0.97-1.22) inconclusive" in line
    assert line.index("p99") < line.index("throughput")


def test_inconclusive_summary_says_how_large_a_gain_could_hide_and_never_as_good():
    entry = {
        **FRONT[1],
        "confirmed": True,
        "verdict": "inconclusive",
        "vs_defaults": {"throughput_rps": {"ratio": 1.11, "ratio_ci95": [0.98, 1.25], "mde": 0.24}},
    }
    line = summary_line([entry], ["throughput_rps", "latency_p99_ms"])
    assert line is not None and "gains under 24% could not be detected" in line
    assert "as good" not in line


# Verdicts: significant and beyond the practical threshold, or equivalent, or inconclusive.


def test_a_significant_change_inside_the_threshold_is_equivalent_not_worse():
    # Seen on a confirmation: RSS x1.011 (CI 1.009-1.012) was called worse. 1% is noise in operation.
    a = [1000.0, 1002.0, 998.0, 1001.0, 999.0]
    b = [x * 1.011 + d for x, d in zip(a, [0.3, -0.2, 0.1, -0.3, 0.2], strict=True)]
    m = compare_metric("rss_mb", a, b, paired=True, min_effect=0.02)
    assert m.ratio_ci95 is not None and m.ratio_ci95[0] > 1  # significant...
    assert m.verdict is Verdict.equivalent  # ...but within +-2%
    assert compare_metric("rss_mb", a, b, paired=True, min_effect=0.005).verdict is Verdict.worse


def test_equivalence_needs_the_whole_interval_inside_the_threshold():
    est = Estimate(log_ratio=0.0, se=0.02, df=9, method="paired", n_a=10, n_b=10)  # 95% CI about +-4.5%
    assert classify(est, "maximize", min_effect=0.05) is Verdict.equivalent
    assert classify(est, "maximize", min_effect=0.02) is Verdict.inconclusive
    gain = Estimate(log_ratio=math.log(1.10), se=0.02, df=9, method="paired", n_a=10, n_b=10)
    assert classify(gain, "maximize", 0.02) is Verdict.better
    assert classify(gain, "minimize", 0.02) is Verdict.worse  # ten percent more latency


def test_pairs_cancel_a_drift_that_hides_a_gain_from_unpaired_sides():
    # The host slows by up to 30% from round to round; B is 5% faster within every round.
    rng = np.random.default_rng(3)
    drift = np.exp(rng.normal(0, 0.15, 8))
    a = list(100 * drift * np.exp(rng.normal(0, 0.01, 8)))
    b = list(105 * drift * np.exp(rng.normal(0, 0.01, 8)))
    assert compare_metric("throughput_rps", a, b).verdict is Verdict.inconclusive
    paired = compare_metric("throughput_rps", a, b, paired=True)
    assert paired.verdict is Verdict.better and paired.method == "paired"


def test_a_failed_run_drops_its_pair_only():
    est = paired_estimate([100.0, None, 100.0, 100.0], [110.0, 120.0, 111.0, 109.0])
    assert est is not None and est.n_a == est.n_b == 3
    with pytest.raises(ValueError, match="as many A as B"):
        paired_estimate([1.0, 2.0], [1.0])


def test_holm_judges_the_smallest_p_at_alpha_over_m_and_stops_at_the_first_kept():
    assert holm_alphas([0.001, 0.04, 0.03, 0.5]) == pytest.approx([0.0125, 0.05 / 3, 0.05 / 3, 0.05 / 3])
    assert holm_alphas([0.001, 0.002]) == pytest.approx([0.025, 0.05])
    # Each test's interval at 1 - its level excludes 1 exactly when Holm rejects it.
    p = [0.001, 0.012, 0.03, 0.2, 0.02]
    levels = holm_alphas(p)
    assert [pv <= lv for pv, lv in zip(p, levels, strict=True)] == [True, True, False, False, False]


def test_holm_holds_the_family_error_at_five_percent_over_six_true_nulls():
    # Three candidates x two objectives, none different from the defaults: without a correction one
    # of six tests at 5% fires about 26% of the time.
    rng = np.random.default_rng(4)
    from scipy import stats

    fired = plain = 0
    for _ in range(4000):
        p = list(2 * stats.norm.sf(np.abs(rng.normal(size=6))))
        fired += any(pv <= lv for pv, lv in zip(p, holm_alphas(p), strict=True))
        plain += min(p) <= 0.05
    assert fired / 4000 <= 0.06 and plain / 4000 > 0.2


def test_mde_is_the_effect_found_four_times_in_five():
    # Known spread: 5 pairs of log-ratios with sd 0.06. Simulate the effect mde reports.
    n, sd = 5, 0.06
    mde = Estimate(0.0, sd / math.sqrt(n), n - 1, "paired", n, n).mde()
    rng = np.random.default_rng(5)
    found = 0
    for _ in range(3000):
        d = rng.normal(math.log(1 + mde), sd, n)
        found += classify(paired_estimate([1.0] * n, list(np.exp(d))), "maximize", 0.0) is Verdict.better  # type: ignore[arg-type]
    assert 0.72 < found / 3000 < 0.88


# The sequential rule: its cost in coverage, and what it buys.


def _sequential(rng: np.random.Generator, sd: float, rule: StopRule, runs: int) -> list[Estimate]:
    """RUNS A/A comparisons whose pairs' log-ratios spread by SD, each measured until RULE stops."""
    d = rng.normal(0, sd, (runs, rule.max_repeats))
    n = np.arange(1, rule.max_repeats + 1)
    means = np.cumsum(d, axis=1) / n
    # Running sample variance from running sums (vectorized: thousands of comparisons in well under a second).
    sq = np.cumsum(d**2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sds = np.sqrt(np.maximum(sq - n * means**2, 0) / (n - 1))
    out = []
    for i in range(runs):
        for k in range(2, rule.max_repeats + 1):
            est = Estimate(float(means[i, k - 1]), float(sds[i, k - 1] / math.sqrt(k)), k - 1, "paired", k, k)
            if rule.done(k, [est]):
                break
        out.append(est)
    return out


@pytest.mark.parametrize("sd", [0.02, 0.08, 0.12])
def test_after_a_sequential_stop_the_verdict_interval_still_covers_95_percent(sd):
    # Stopping when the interval is narrow favours runs whose spread was small by luck: the plain 95%
    # interval then covers about 91-92% at the worst noise (checked below); taken at alpha/2 it keeps 95%.
    estimates = _sequential(np.random.default_rng(int(sd * 1000)), sd, StopRule(), 3000)
    covered = sum(e.half_width(0.025) >= abs(e.log_ratio) for e in estimates) / len(estimates)
    assert covered >= 0.94  # 95% within simulation error (+-0.4%)


def test_after_a_sequential_stop_the_plain_95_percent_interval_covers_less():
    # The cost the widening above pays for, as documented: at 8% noise the plain interval falls short of 95%.
    estimates = _sequential(np.random.default_rng(80), 0.08, StopRule(), 3000)
    covered_plain = sum(e.half_width(0.05) >= abs(e.log_ratio) for e in estimates) / len(estimates)
    assert covered_plain < 0.935


@pytest.mark.parametrize(("sd", "equivalent_at_least"), [(0.02, 0.85), (0.03, 0.75)])
def test_a_over_a_rarely_claims_and_shows_equivalence_at_5_percent_when_pairs_agree(sd, equivalent_at_least):
    # The A/A target (equivalent in 15 of 20 at +-5%) needs a tighter precision than the margin, and pairs
    # whose log-ratios spread by 3% or less: with +-5% precision the interval at the stop nearly touches +-5%.
    rule = StopRule(precision=0.03)
    estimates = _sequential(np.random.default_rng(6), sd, rule, 2000)
    verdicts = [classify(e, "maximize", 0.05, 0.05 / 2) for e in estimates]
    assert sum(v.significant for v in verdicts) / len(verdicts) <= 0.01
    assert verdicts.count(Verdict.equivalent) / len(verdicts) >= equivalent_at_least
    loose = [
        classify(e, "maximize", 0.05, 0.05 / 2) for e in _sequential(np.random.default_rng(6), sd, StopRule(), 2000)
    ]
    assert loose.count(Verdict.equivalent) / len(loose) < 0.5


def test_the_rule_never_stops_before_three_pairs_nor_goes_past_its_budget():
    rule = StopRule(min_repeats=3, max_repeats=10, precision=0.05)
    tight = Estimate(0.0, 0.001, 1, "paired", 2, 2)
    loose = Estimate(0.0, 0.5, 5, "paired", 6, 6)
    assert not rule.done(2, [tight]) and rule.done(3, [tight])
    assert not rule.done(9, [loose]) and rule.done(10, [loose])
    assert not rule.done(5, [tight, None])  # an objective with no estimate yet keeps it going
    fixed = StopRule.fixed_count(4)
    assert not fixed.done(3, [tight]) and fixed.done(4, [loose]) and not fixed.sequential


def _fake_measure(throughput: dict[str, float], sd: float, seed: int):
    """Runs whose throughput is THROUGHPUT[config's intra-op threads] with noise; p99 its inverse."""
    rng = np.random.default_rng(seed)

    def measure(config: ServingConfig, _say) -> TrialResult:
        tp = throughput[str(config.intra_op_threads)] * math.exp(rng.normal(0, sd))
        metrics = {"throughput_rps": tp, "latency_p99_ms": 1000 / tp, "stable": True, "server_pid": 4242}
        return TrialResult("tiny", "fake", "grpc", config, [], metrics=metrics)

    return measure


def test_interleaved_measurement_stops_when_precise_and_keeps_both_sides_of_every_pair():
    measure = _fake_measure({"0": 100.0, "1": 100.0}, 0.005, 1)
    measured = measure_interleaved([ServingConfig(), ServingConfig(intra_op_threads=1)], StopRule(), measure)
    assert measured.rounds == 3 and measured.stopped == "precision"
    a, b = measured.sides
    assert [r["round"] for r in a.run_records()] == [0, 1, 2] == [r["round"] for r in b.run_records()]
    assert all(r["server_pid"] == 4242 and r["started_at"].endswith("Z") for r in a.run_records())
    noisy = _fake_measure({"0": 100.0, "1": 100.0}, 0.2, 2)
    measured = measure_interleaved([ServingConfig(), ServingConfig(intra_op_threads=1)], StopRule(), noisy)
    assert measured.rounds == 10 and measured.stopped == "max_repeats"
