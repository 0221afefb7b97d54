"""Measure configs against each other on fresh servers, interleaved, and say what is significant.

One trial is one draw: servers differ from start to start (memory layout, thread
placement, the host's other tenants), by more than many effects a tuner chooses
between. So each config is measured REPEATS times, each time on a fresh server, in
rounds whose order alternates (A B, B A, A B, ...: ABBA), so a slow drift of the host
weighs on every side alike. The figures go to `significance` for ratios, intervals
and verdicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from autotune.knobs import ServingConfig
from autotune.load.stats import round_figure
from autotune.models.resolve import ModelRef
from autotune.servers.backends import Backend
from autotune.servers.target import Target
from autotune.significance import MetricComparison, Verdict, compare_runs, overall
from autotune.trial import MeasureSettings, TrialResult, run_target, run_trial

COMPARED_METRICS = ("throughput_rps", "latency_p99_ms", "cpu_cores", "rss_mb", "cost_per_1k_requests", "load_time_s")
# How a config becomes one measurement (live trials; tests and replays may pass their own).
MeasureOne = Callable[[ServingConfig, Callable[[str], None] | None], TrialResult]


def interleaved_order(sides: int, repeats: int) -> list[int]:
    """Side indices in measurement order: rounds alternate forward and backward (ABBA...)."""
    order: list[int] = []
    for r in range(repeats):
        round_ = list(range(sides))
        order.extend(round_ if r % 2 == 0 else reversed(round_))
    return order


@dataclass
class Side:
    """One config's repeated measurements."""

    config: ServingConfig
    runs: list[TrialResult] = field(default_factory=list)

    @property
    def good(self) -> list[dict[str, Any]]:
        """Metrics of the runs that measured (failed runs carry no figures)."""
        return [r.metrics for r in self.runs if r.ok]

    def medians(self) -> dict[str, Any]:
        """Median of each compared metric over the good runs, plus how many and whether all were stable."""
        good = self.good
        out: dict[str, Any] = {}
        # Open loop's offered and achieved rates too: a confirmed row must not keep its search draw's.
        others = ("latency_p50_ms", "latency_p90_ms", "gpu_mem_mb", "error_rate", "offered_rps", "achieved_rps")
        for key in (*COMPARED_METRICS, *others):
            values = [m[key] for m in good if m.get(key) is not None]
            out[key] = round_figure(median(values)) if values else None
        out["cpus_allocated"] = good[0].get("cpus_allocated") if good else None
        out["runs"] = len(good)
        out["failed_runs"] = len(self.runs) - len(good)
        out["stable"] = bool(good) and all(m.get("stable") for m in good)
        return out


def measure_interleaved(
    configs: Sequence[ServingConfig],
    repeats: int,
    measure: MeasureOne,
    progress: Callable[[str], None] | None = None,
) -> list[Side]:
    """Measure every config REPEATS times on fresh servers, in ABBA order; one Side per config."""
    sides = [Side(c) for c in configs]
    order = interleaved_order(len(sides), repeats)
    for step, index in enumerate(order, 1):
        say = (
            (lambda msg, i=index, n=step: progress(f"[{n}/{len(order)}] {'AB'[i] if len(sides) == 2 else i}: {msg}"))
            if progress
            else None
        )
        result = measure(sides[index].config, say)
        sides[index].runs.append(result)
        if result.failure_reason == "interrupted":
            raise KeyboardInterrupt
    return sides


@dataclass
class Comparison:
    """B against A: each side's medians and runs, per-metric comparisons and the overall verdict."""

    a: Side
    b: Side
    metrics: dict[str, MetricComparison]
    verdict: Verdict
    objectives: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "a": {"config": self.a.config.to_dict(), "median": self.a.medians(), "runs": self.a.good},
            "b": {"config": self.b.config.to_dict(), "median": self.b.medians(), "runs": self.b.good},
            "metrics": {k: v.to_json() for k, v in self.metrics.items()},
            "verdict": self.verdict.value,
            "objectives": list(self.objectives),
        }


def judge(a: Side, b: Side, objectives: Sequence[str] = ("throughput_rps", "latency_p99_ms")) -> Comparison:
    """Compare two measured sides; the overall verdict is over OBJECTIVES."""
    metrics = compare_runs(a.good, b.good, COMPARED_METRICS)
    return Comparison(a, b, metrics, overall(metrics, objectives), tuple(objectives))


def live_measure(model: ModelRef, settings: MeasureSettings, backend: Backend) -> MeasureOne:
    """Measurements on live servers, one fresh server per call."""
    return lambda config, say: run_trial(model, config, settings, backend, progress=say)


def running_side_a(
    baseline: ServingConfig,
    target: Target,
    model: ModelRef,
    settings: MeasureSettings,
    fresh: MeasureOne,
    known: ServingConfig | None = None,
) -> MeasureOne:
    """Measurements whose side A is the server already running at TARGET, read as it runs (KNOWN: what the
    user says it runs, recorded only); every other config on fresh servers (FRESH).

    Side A is the BASELINE object itself: measure_interleaved hands back the configs it was given, so an
    equal candidate is still side B."""

    def measure(config: ServingConfig, say: Callable[[str], None] | None) -> TrialResult:
        if config is baseline:
            return run_target(target, model.name, model.signature, settings, known, say)
        return fresh(config, say)

    return measure


def compare(
    a: ServingConfig,
    b: ServingConfig,
    repeats: int,
    measure: MeasureOne,
    progress: Callable[[str], None] | None = None,
    objectives: Sequence[str] = ("throughput_rps", "latency_p99_ms"),
) -> Comparison:
    """Measure A and B interleaved, REPEATS times each, and judge B against A."""
    side_a, side_b = measure_interleaved([a, b], repeats, measure, progress)
    return judge(side_a, side_b, objectives)
