"""Measure configs against each other on fresh servers, in interleaved pairs, until the answer is precise.

One trial is one draw: servers differ from start to start (memory layout, thread placement, the
host's other tenants), by more than many effects a tuner chooses between. So configs are measured
in rounds, each config once per round on a fresh server, rounds alternating forward and backward
(A B, B A, ...: ABBA) so a slow drift of the host weighs on every side alike. Round i of A and of B
form a pair, and the analysis is on the pairs' log-ratios (`significance`): the drift cancels within
a pair. Rounds go on until every objective's 95% interval is narrower than +-precision, or the budget
of rounds is spent (`StopRule`, fixed before the first run). Every run of every side is kept, failed or
not, with its server's pid and start time, so each ratio can be recomputed from the record.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from autotune.knobs import ServingConfig
from autotune.load.stats import round_figure
from autotune.measure import MeasureSettings, TrialResult, run_target, run_trial
from autotune.models.resolve import ModelRef
from autotune.servers.backends import Backend
from autotune.servers.target import Target
from autotune.significance import (
    ALPHA,
    MIN_REPEATS,
    MetricComparison,
    StopRule,
    Verdict,
    compare_runs,
    holm_alphas,
    overall,
    paired_estimate,
)

COMPARED_METRICS = ("throughput_rps", "latency_p99_ms", "cpu_cores", "rss_mb", "cost_per_1k_requests", "load_time_s")
DEFAULT_OBJECTIVES = ("throughput_rps", "latency_p99_ms")
# How a config becomes one measurement (live trials; tests and replays may pass their own).
MeasureOne = Callable[[ServingConfig, Callable[[str], None] | None], TrialResult]


def interleaved_order(sides: int, repeats: int) -> list[int]:
    """Side indices in measurement order: rounds alternate forward and backward (ABBA...)."""
    order: list[int] = []
    for r in range(repeats):
        order.extend(round_order(sides, r))
    return order


def round_order(sides: int, r: int) -> list[int]:
    """The order of round R: forward on even rounds, backward on odd ones."""
    return list(range(sides)) if r % 2 == 0 else list(reversed(range(sides)))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Side:
    """One config's measurements, one per round, in order (failed ones included)."""

    config: ServingConfig
    runs: list[TrialResult] = field(default_factory=list)
    # Per run: its round, when its server was asked for (UTC), and the order in the whole sequence.
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def good(self) -> list[dict[str, Any]]:
        """Metrics of the runs that measured (failed runs carry no figures)."""
        return [r.metrics for r in self.runs if r.ok]

    def by_round(self) -> list[dict[str, Any] | None]:
        """Metrics per round, None where the run failed: index i pairs with round i of the other sides."""
        return [r.metrics if r.ok else None for r in self.runs]

    def run_records(self) -> list[dict[str, Any]]:
        """Every run as stored: round, start time, server pid, its figures or why it failed."""
        out = []
        for run, record in zip(self.runs, self.records + [{}] * (len(self.runs) - len(self.records)), strict=True):
            row = {**record, "server_pid": run.metrics.get("server_pid"), "ok": run.ok}
            if run.ok:
                row["metrics"] = run.metrics
            else:
                row["failure_reason"] = run.failure_reason
                row["failure_message"] = run.failure_message
            out.append(row)
        return out

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

    def to_json(self) -> dict[str, Any]:
        """Config, medians, the good runs' metrics (each with its round, start and pid) and every run."""
        good = [{**r["metrics"], **_stamp(r)} for r in self.run_records() if r["ok"]]
        return {"config": self.config.to_dict(), "median": self.medians(), "runs": good, "all_runs": self.run_records()}


def _stamp(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in ("round", "started_at", "server_pid")}


@dataclass
class Measured:
    """Interleaved sides and why the measurement stopped."""

    sides: list[Side]
    rounds: int
    stopped: str  # "precision", "max_repeats" or "fixed"
    rule: StopRule


def measure_interleaved(
    configs: Sequence[ServingConfig],
    rule: StopRule | int,
    measure: MeasureOne,
    progress: Callable[[str], None] | None = None,
    objectives: Sequence[str] = DEFAULT_OBJECTIVES,
) -> Measured:
    """Measure configs round by round (ABBA), side 0 against each other side in pairs, until RULE stops.

    An int RULE measures exactly that many rounds."""
    rule = StopRule.fixed_count(rule) if isinstance(rule, int) else rule
    sides = [Side(c) for c in configs]
    step, total = 0, len(sides) * rule.max_repeats
    rounds = 0
    while True:
        for index in round_order(len(sides), rounds):
            step += 1
            label = "AB"[index] if len(sides) == 2 else str(index)
            say = (lambda msg, n=step, lab=label: progress(f"[{n}/<={total}] {lab}: {msg}")) if progress else None
            record = {"round": rounds, "order": step, "started_at": _now()}
            result = measure(sides[index].config, say)
            sides[index].runs.append(result)
            sides[index].records.append(record)
            if result.failure_reason == "interrupted":
                raise KeyboardInterrupt
        rounds += 1
        estimates = [
            paired_estimate(_figures(sides[0], m), _figures(side, m)) for side in sides[1:] for m in objectives
        ]
        if rule.done(rounds, estimates):
            break
    stopped = "fixed" if rule.fixed else ("max_repeats" if rounds >= rule.max_repeats else "precision")
    if stopped == "max_repeats" and all(rule.precise(e) for e in estimates):
        stopped = "precision"  # it got there on the last round
    return Measured(sides, rounds, stopped, rule)


def _figures(side: Side, metric: str) -> list[float | None]:
    return [m.get(metric) if m else None for m in side.by_round()]


@dataclass
class Comparison:
    """B against A: each side's runs, per-metric comparisons and the overall verdict."""

    a: Side
    b: Side
    metrics: dict[str, MetricComparison]
    verdict: Verdict
    objectives: tuple[str, ...]
    rounds: int | None = None
    stopped: str | None = None
    rule: StopRule | None = None

    def message(self) -> str:
        """What the verdict means in one line: no 'as good' unless equivalence was shown."""
        return verdict_message(self.verdict, self.metrics, self.objectives)

    def to_json(self) -> dict[str, Any]:
        precise = self.rule is not None and all(
            self.metrics[m].ratio_ci95 is not None and _within(self.metrics[m].ratio_ci95, self.rule.precision)
            for m in self.objectives
            if m in self.metrics
        )
        return {
            "a": self.a.to_json(),
            "b": self.b.to_json(),
            "metrics": {k: v.to_json() for k, v in self.metrics.items()},
            "verdict": self.verdict.value,
            "message": self.message(),
            "objectives": list(self.objectives),
            "alpha": ALPHA,
            "alpha_adjusted": {m: self.metrics[m].alpha_adjusted for m in self.objectives if m in self.metrics},
            "stopping": {
                **(self.rule.to_json() if self.rule else {}),
                "rounds": self.rounds,
                "stopped": self.stopped,
                "precision_reached": precise,
            },
        }


def _within(ci: tuple[float, float], precision: float) -> bool:
    """Whether an interval's half-width on the log scale is within log(1 + precision)."""
    return (math.log(ci[1]) - math.log(ci[0])) / 2 <= math.log(1 + precision) + 1e-12


def verdict_message(verdict: Verdict, metrics: dict[str, MetricComparison], objectives: Sequence[str]) -> str:
    """'as good' only on equivalence; otherwise say how large a gain could have gone unseen."""
    if verdict is Verdict.equivalent:
        return "equivalent within the practical threshold: the defaults are as good"
    if verdict in (Verdict.better, Verdict.worse, Verdict.mixed):
        return verdict.value
    mdes = [(m, metrics[m].mde) for m in objectives if m in metrics and metrics[m].mde is not None]
    if not mdes:
        return "not measured: fewer than two good pairs"
    worst = max(x for _, x in mdes)
    parts = ", ".join(f"{_LABELS.get(m, m)} {x:.0%}" for m, x in mdes)
    return f"no gain shown; gains under {worst:.0%} could not be detected ({parts})"


_LABELS = {"throughput_rps": "throughput", "latency_p99_ms": "p99", "cpu_cores": "cpu", "cost_per_1k_requests": "cost"}


def family_alphas(
    base: Side, candidates: Sequence[Side], objectives: Sequence[str], alpha: float = ALPHA
) -> list[dict[str, float]]:
    """Holm over candidates x objectives: each candidate's level per objective (the family's error at ALPHA)."""
    keys = [(k, m) for k in range(len(candidates)) for m in objectives]
    p = []
    for k, m in keys:
        est = paired_estimate(_figures(base, m), _figures(candidates[k], m))
        p.append(est.p_value() if est is not None else 1.0)
    levels = holm_alphas(p, alpha)
    out: list[dict[str, float]] = [{} for _ in candidates]
    for (k, m), level in zip(keys, levels, strict=True):
        out[k][m] = level
    return out


def judge(
    a: Side,
    b: Side,
    objectives: Sequence[str] = DEFAULT_OBJECTIVES,
    *,
    alphas: dict[str, float] | None = None,
    min_effects: dict[str, float] | None = None,
    sequential: bool = False,
) -> Comparison:
    """Compare two sides measured in pairs (round by round); the overall verdict is over OBJECTIVES.

    ALPHAS: each objective's Holm level (default: Holm over OBJECTIVES of this one comparison)."""
    levels = alphas if alphas is not None else family_alphas(a, [b], objectives)[0]
    metrics = compare_runs(
        a.by_round(),
        b.by_round(),
        COMPARED_METRICS,
        paired=True,
        min_effects=min_effects,
        alphas=levels,
        sequential=sequential,
    )
    return Comparison(a, b, metrics, overall(metrics, objectives), tuple(objectives))


def live_measure(model: ModelRef, settings: MeasureSettings, backend: Backend) -> MeasureOne:
    """Measurements on live servers, one fresh server per call; each run keeps its server's pid."""

    def measure(config: ServingConfig, say: Callable[[str], None] | None) -> TrialResult:
        pids: list[int] = []
        result = run_trial(model, config, settings, backend, progress=say, on_server_start=pids.append)
        if pids:
            result.metrics.setdefault("server_pid", pids[0])
        return result

    return measure


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
    rule: StopRule | int,
    measure: MeasureOne,
    progress: Callable[[str], None] | None = None,
    objectives: Sequence[str] = DEFAULT_OBJECTIVES,
    min_effects: dict[str, float] | None = None,
) -> Comparison:
    """Measure A and B in interleaved pairs until RULE stops (an int: exactly that many), and judge B against A."""
    measured = measure_interleaved([a, b], rule, measure, progress, objectives)
    side_a, side_b = measured.sides
    result = judge(side_a, side_b, objectives, min_effects=min_effects, sequential=measured.rule.sequential)
    result.rounds, result.stopped, result.rule = measured.rounds, measured.stopped, measured.rule
    return result


def stop_rule(repeats: int | None, precision: float, max_repeats: int) -> StopRule:
    """compare's rule from its options: --repeats fixes the count, else pairs until --precision or --max-repeats."""
    from autotune.errors import AutotuneError

    if repeats is not None:
        if not MIN_REPEATS <= repeats <= 50:
            raise AutotuneError(f"--repeats must be in {MIN_REPEATS}..50 (a spread needs 3 a side), got {repeats}")
        return StopRule.fixed_count(repeats)
    rule = StopRule(MIN_REPEATS, max_repeats, precision)
    if not MIN_REPEATS <= max_repeats <= 50:
        raise AutotuneError(f"--max-repeats must be in {MIN_REPEATS}..50, got {max_repeats}")
    if not 0 < precision < 1:
        raise AutotuneError(f"--precision must be a fraction in (0, 1) such as 0.05, got {precision}")
    return rule


def check_min_effect(min_effect: float) -> dict[str, float]:
    """--min-effect as a threshold per compared metric (one-line error outside [0, 1))."""
    from autotune.errors import AutotuneError

    if not 0 <= min_effect < 1:
        raise AutotuneError(f"--min-effect must be a fraction in [0, 1) such as 0.02, got {min_effect}")
    return dict.fromkeys(COMPARED_METRICS, min_effect)


def describe(rule: StopRule) -> str:
    """The rule in a few words, for the line printed before measuring."""
    if rule.fixed:
        return f"{rule.max_repeats} runs a side"
    return f"{rule.min_repeats}-{rule.max_repeats} runs a side until +-{rule.precision:.0%}"
