"""Percentiles and the stability rule."""

from autotune.load.stats import coefficient_of_variation, percentiles, spread, windows_agree


def test_percentiles_are_exact_order_statistics():
    lat = list(range(1, 101))  # 1..100 ms
    p = percentiles(lat)
    assert p["p50"] == 50 or p["p50"] == 51
    assert p["p99"] == 99 or p["p99"] == 100
    assert p["max"] == 100
    assert p["p99"] in lat  # never a value no request saw


def test_percentiles_of_nothing_are_none():
    assert percentiles([])["p99"] is None


def test_windows_agree_needs_k_windows_within_tolerance():
    assert not windows_agree([100, 100], [10, 10], 3, 0.1)
    assert windows_agree([80, 100, 101, 99], [50, 10, 10.5, 10.2], 3, 0.1)
    assert not windows_agree([100, 100, 100], [10, 10, 12], 3, 0.1)  # p99 spread 20%
    assert not windows_agree([100, 100, 100], [10, None, 10], 3, 0.1)


def test_spread_and_cv():
    assert spread([90, 100, 110]) == 0.2
    assert coefficient_of_variation([10, 10, 10]) == 0.0
    assert 0.09 < coefficient_of_variation([90, 100, 110]) < 0.11
