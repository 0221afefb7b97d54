"""Confirm a search's Pareto set: re-measure its candidates against the defaults before anyone trusts it.

The search's single draws only nominate. At most three candidates (the most throughput,
the lowest p99, the balanced one) and TF Serving's defaults are measured again on fresh
servers, in interleaved rounds until every ratio is precise or the budget is spent (`compare`), with
Holm's correction over candidates x objectives; the front that is stored, shown and exported carries
these confirmed medians and a verdict against the defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from autotune.compare import COMPARED_METRICS, MeasureOne, family_alphas, judge, measure_interleaved
from autotune.knobs import ServingConfig, is_default_config
from autotune.pareto import PICKS, pick_index
from autotune.significance import StopRule, Verdict

MAX_CANDIDATES = 3
# Figures of one run that have no meaning for a median over several.
_PER_RUN = ("throughput_ci95", "latency_p99_ci95", "requests", "censored", "windows_used")


def candidates(entries: Sequence[dict[str, Any]], limit: int = MAX_CANDIDATES) -> list[int]:
    """Indices of the front entries worth confirming: one per pick, then the rest by throughput; defaults left out."""
    metrics = [e["metrics"] for e in entries]
    chosen: list[int] = []
    for how in PICKS:
        if not metrics:
            break
        i = pick_index(metrics, how)
        if i not in chosen and not is_default_config(entries[i]["config"]):
            chosen.append(i)
    # Picks can coincide (a front of one, or ties): fill up from the rest, most throughput first.
    rest = sorted(range(len(entries)), key=lambda i: (-(metrics[i].get("throughput_rps") or 0.0), entries[i]["trial"]))
    chosen += [i for i in rest if i not in chosen and not is_default_config(entries[i]["config"])]
    return chosen[:limit]


def confirm_front(
    entries: list[dict[str, Any]],
    rule: StopRule | int,
    measure: MeasureOne,
    config_of: Callable[[dict[str, Any]], ServingConfig],
    objectives: Sequence[str],
    progress: Callable[[str], None] | None = None,
    feasible: Callable[[dict[str, Any]], bool] | None = None,
    min_effects: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """The front with confirmed figures: each confirmed entry gets medians, both sides' runs and `vs_defaults`.

    The candidates and the defaults are measured in rounds until RULE stops (an int: that many rounds);
    Holm holds the error rate over candidates x objectives. FEASIBLE judges the confirmed medians against
    the study's SLO and limits: a candidate whose single draw met them but whose medians do not is marked
    `infeasible`, whatever it gains."""
    picked = candidates(entries)
    if (isinstance(rule, int) and rule <= 0) or not picked:
        return [{**e, "confirmed": False} for e in entries]
    compared = [m for m in objectives if m in COMPARED_METRICS]
    configs = [ServingConfig()] + [config_of(entries[i]) for i in picked]
    measured = measure_interleaved(configs, rule, measure, progress, compared)
    defaults, others = measured.sides[0], measured.sides[1:]
    levels = family_alphas(defaults, others, compared)
    out = [{**e, "confirmed": False} for e in entries]
    defaults_json = defaults.to_json()
    for i, side, alphas in zip(picked, others, levels, strict=True):
        comparison = judge(
            defaults, side, compared, alphas=alphas, min_effects=min_effects, sequential=measured.rule.sequential
        )
        medians = side.medians()
        trusted = medians["runs"] >= 2 and medians["stable"]
        verdict = comparison.verdict if trusted else Verdict.not_measured
        if trusted and feasible is not None and not feasible(medians):
            verdict = Verdict.infeasible
        side_json = side.to_json()
        out[i] = {
            **entries[i],
            "search_metrics": entries[i]["metrics"],
            # The confirmed medians replace the search's single draw; the draw's own intervals and counts
            # described one server and would mislead beside medians of several: they stay in search_metrics.
            "metrics": {
                **{k: v for k, v in entries[i]["metrics"].items() if k not in _PER_RUN},
                **{k: v for k, v in medians.items() if v is not None},
                "requests": sum(m.get("requests") or 0 for m in side.good),
            },
            "confirmed": trusted,
            "confirm_runs": side_json["runs"],
            # Both sides of every pair, failed runs too, so each ratio can be recomputed from the store.
            "confirm_all_runs": side_json["all_runs"],
            "defaults": defaults.medians(),
            "defaults_runs": defaults_json["all_runs"],
            "vs_defaults": {k: v.to_json() for k, v in comparison.metrics.items()},
            "verdict": verdict.value,
            "message": comparison.message(),
            "alpha_adjusted": alphas,
            "confirmation": {
                **measured.rule.to_json(),
                "rounds": measured.rounds,
                "stopped": measured.stopped,
                "holm_family": len(others) * len(compared),
            },
        }
    return out


def summary_line(entries: Sequence[dict[str, Any]], objectives: Sequence[str]) -> str | None:
    """One plain line on whether the tuning beat TF Serving's defaults; None when nothing was confirmed."""
    confirmed = [e for e in entries if e.get("confirmed")]
    if entries and all(is_default_config(e["config"]) for e in entries):
        return "TF Serving's defaults dominate every configuration measured: keep the defaults"
    if not confirmed:
        return None
    better = [e for e in confirmed if e.get("verdict") == Verdict.better.value]
    if better:
        parts = [f"trial {e['trial']}: {_gains(e['vs_defaults'])}" for e in better]
        return "significantly better than TF Serving's defaults: " + "; ".join(parts)
    names = ", ".join(m for m in objectives if m in COMPARED_METRICS)
    if all(e.get("verdict") == Verdict.equivalent.value for e in confirmed):
        return (
            f"no configuration is better than TF Serving's defaults on {names} ({len(confirmed)} candidates "
            "confirmed, each equivalent within its practical threshold): the defaults are as good"
        )
    mdes = [
        c["mde"]
        for e in confirmed
        for m, c in (e.get("vs_defaults") or {}).items()
        if m in objectives and c.get("mde") is not None
    ]
    unseen = f"; gains under {max(mdes):.0%} could not be detected" if mdes else ""
    return f"no gain shown over TF Serving's defaults on {names} ({len(confirmed)} candidates confirmed){unseen}"


_LABELS = {"throughput_rps": "throughput", "latency_p99_ms": "p99", "cpu_cores": "cpu", "cost_per_1k_requests": "cost"}


def _gains(vs_defaults: dict[str, Any]) -> str:
    """The significant changes first, then the rest marked as not significant: a ratio whose interval
    holds 1 must never read as a gain."""
    significant, other = [], []
    for metric, c in vs_defaults.items():
        if not c.get("ratio") or not c.get("ratio_ci95"):
            continue
        lo, hi = c["ratio_ci95"]
        text = f"{_LABELS.get(metric, metric)} x{c['ratio']:.2f} (95% CI {lo:.2f}-{hi:.2f})"
        if c.get("verdict") in (Verdict.better.value, Verdict.worse.value):
            significant.append(f"{text} {c['verdict']}")
        elif c.get("verdict") in (Verdict.equivalent.value, Verdict.inconclusive.value):
            other.append(f"{text} {c['verdict']}")
        elif c.get("verdict") == "no_significant_difference":  # stored before issue 25
            other.append(f"{text} not significant")
        else:
            other.append(text)
    return ", ".join(significant + other) or "see pareto --json"
