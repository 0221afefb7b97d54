"""After the search: how the picked config's latency grows with load, and the concurrency where it breaks the SLO.

The search measures each config at the study's one load. A deployment meets other
loads, so the config the export would deploy is measured once more under a closed-loop
ramp (1, 2, 4, ... clients) on a fresh server, past saturation, until its p99 breaks the
SLO (or the ramp's cap; without an SLO, until throughput stops growing). The curve is
stored with the job's front and drawn by `report`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from autotune.knobs import ServingConfig
from autotune.measure import MeasureSettings, TrialResult


def sweep_settings(settings: MeasureSettings) -> MeasureSettings:
    """The study's measurement, as a ramp of closed-loop clients instead of its fixed load."""
    return replace(settings, concurrency=None, rate=None, measure_unloaded=True, ramp_to_slo=True)


def summarize(result: TrialResult, slo_ms: float | None) -> dict[str, Any]:
    """The ramp's points (one per level) and where the SLO broke, or why the ramp stopped short of it."""
    points = [
        {
            "concurrency": lv.concurrency,
            "throughput_rps": round(lv.throughput_rps, 3),
            "latency_p50_ms": lv.latency_p50_ms and round(lv.latency_p50_ms, 3),
            "latency_p99_ms": lv.latency_p99_ms and round(lv.latency_p99_ms, 3),
            "requests": lv.requests,
            "stable": lv.stable,
            "cpu_cores": lv.cpu_cores and round(lv.cpu_cores, 3),
            "rss_mb": lv.rss_mb and round(lv.rss_mb, 1),
            "throttled_periods": lv.throttled_periods,
        }
        for lv in result.levels
        if lv.mode == "closed"
    ]
    over = [
        p for p in points if slo_ms is not None and p["latency_p99_ms"] is not None and p["latency_p99_ms"] > slo_ms
    ]
    within = [p["concurrency"] for p in points if p not in over]
    return {
        "points": points,
        "slo_ms": slo_ms,
        "max_concurrency_within_slo": max(within) if within else None,
        "slo_breaks_at_concurrency": over[0]["concurrency"] if over else None,
        # Without a break: the ramp's cap held the SLO, or (no SLO) throughput stopped growing.
        "stopped": "slo" if over else "cap" if slo_ms is not None and points else "saturated" if points else "failed",
        "failure_reason": result.failure_reason,
    }


def sweep(
    config: ServingConfig,
    settings: MeasureSettings,
    measure: Callable[[ServingConfig, MeasureSettings], TrialResult],
) -> dict[str, Any]:
    """Ramp CONFIG's load on a fresh server (MEASURE runs one trial) and summarize the curve."""
    return summarize(measure(config, sweep_settings(settings)), settings.slo_ms)
