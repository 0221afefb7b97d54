"""Does the performance model predict what was measured? Every point of a recorded grid (or held-out set),
predicted from a profile measured on the same host, against the median of its live measurements.

    python benchmarks/validate_model.py --grid benchmarks/data/grid-mobilenet-2026-12-04.csv \
        --profile benchmarks/data/profile-mobilenet-2026-12-04.json --out benchmarks/data/validation-mobilenet.csv

Targets (issue 24): Spearman >= 0.8 on goodput; median |error| <= 15% on throughput and <= 25% on p99; the
measured optimum among the simulated top 5. Prints what it found, met or missed; it never fits anything:
the profile is the model's only input, and it is measured with no server and no grid point.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from _common import provenance, write_csv
from grid_file import config_of, point_key, read_grid
from scipy.stats import spearmanr
from search_efficiency import Draw, Point, _draw

from autotune.knobs import SAVEDMODEL
from autotune.perfmodel.profile import Profile
from autotune.perfmodel.simulate import Load, simulate
from autotune.tuner import is_feasible

TARGETS = {"spearman_goodput": 0.8, "median_abs_err_throughput": 0.15, "median_abs_err_p99": 0.25, "top_k": 5}


def load_points(path: Path) -> tuple[dict[str, str], list[Point]]:
    """The file's header and its points, each with every recorded draw (interrupted ones left out)."""
    header, rows = read_grid(path)
    grouped: dict[tuple, list[dict[str, str]]] = {}
    for r in rows:
        if r.get("failure_reason") != "interrupted":
            grouped.setdefault(point_key(r), []).append(r)
    points = [Point(k, config_of(rs[0]), tuple(_draw(r) for r in rs)) for k, rs in sorted(grouped.items(), key=repr)]
    return header, points


def _goodput(throughput: float, p99: float, errors: float, slo: float, max_err: float) -> float:
    ok = is_feasible({"latency_p99_ms": p99, "error_rate": errors, "stable": True}, slo, max_err, 0.95)
    return throughput if ok else 0.0


def _rel(pred: float, meas: float | None) -> float | None:
    return None if not meas else (pred - meas) / meas


def _spread(draws: tuple[Draw, ...], metric: str) -> float | None:
    vals = [getattr(d, metric) for d in draws if getattr(d, metric)]
    return (max(vals) - min(vals)) / statistics.median(vals) if len(vals) > 1 else None


def defaults_slo(points: list[Point], factor: float) -> float:
    """FACTOR x the measured median p99 of TF Serving's defaults: an SLO a host of any speed can be judged by."""
    from autotune.knobs import ServingConfig

    defaults = [p for p in points if p.config == ServingConfig()]
    if not defaults or defaults[0].latency_p99_ms is None:
        sys.exit("error: --slo-from-defaults needs TF Serving's defaults among the points")
    return round(factor * defaults[0].latency_p99_ms, 1)


def validate(
    header: dict[str, str], points: list[Point], profile: Profile, requests: int, slo: float, seed: int = 0
) -> list[dict[str, Any]]:
    """One row per point: knobs, measured medians, predictions (simulated with SEED) and relative errors; goodput
    judged at SLO."""
    max_err = float(header["max_error_rate"])
    load = Load(concurrency=int(header["concurrency"]))
    rows = []
    for p in points:
        pred = simulate(profile, p.config, load, header["protocol"], requests=requests, seed=seed)
        pred_goodput = _goodput(pred.throughput_rps, pred.latency_p99_ms, pred.error_rate, slo, max_err)
        rows.append(
            {
                "config": json.dumps(p.config.to_dict(), sort_keys=True),
                "batching": p.config.enable_batching,
                "draws": len(p.draws),
                "measured_throughput_rps": p.throughput_rps,
                "measured_p99_ms": p.latency_p99_ms,
                "measured_goodput_rps": p.goodput(slo, max_err),
                "slo_ms": slo,
                "measured_cpu_cores": statistics.median([d.cpu_cores for d in p.draws if d.cpu_cores is not None]),
                "throughput_spread": _spread(p.draws, "throughput_rps"),
                "predicted_throughput_rps": round(pred.throughput_rps, 3),
                "predicted_p99_ms": round(pred.latency_p99_ms, 3),
                "predicted_goodput_rps": round(pred_goodput, 3),
                "predicted_cpu_cores": round(pred.cpu_cores, 3),
                "predicted_error_rate": round(pred.error_rate, 5),
                "err_throughput": _rel(pred.throughput_rps, p.throughput_rps),
                "err_p99": _rel(pred.latency_p99_ms, p.latency_p99_ms),
                # Batches as the server counted them (files recorded with --monitoring) and as simulated.
                "measured_mean_batch_size": p.mean_batch_size,
                "predicted_mean_batch_size": round(pred.mean_batch_size, 3),
                "err_batch_size": _rel(pred.mean_batch_size, p.mean_batch_size) if p.config.enable_batching else None,
            }
        )
    return rows


def _median_abs(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [abs(r[key]) for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def _col(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in rows if r[key] is not None]


def _rho(rows: list[dict[str, Any]], metric: str) -> float:
    """Spearman's rank correlation of measured and predicted METRIC over the points."""
    rho = spearmanr([r[f"measured_{metric}"] for r in rows], [r[f"predicted_{metric}"] for r in rows]).statistic
    return round(float(rho), 3)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rank agreement, median errors, and where the measured optimum falls in the predicted order."""
    meas = [r["measured_goodput_rps"] for r in rows]
    pred = [r["predicted_goodput_rps"] for r in rows]
    rho = _rho(rows, "goodput_rps")
    best = max(range(len(rows)), key=lambda i: meas[i])
    # Ties in the prediction rank pessimistically: the optimum is placed after every point predicted as good.
    rank = 1 + sum(1 for i in range(len(rows)) if i != best and pred[i] >= pred[best])
    picked = max(range(len(rows)), key=lambda i: pred[i])
    spreads = [r["throughput_spread"] for r in rows if r["throughput_spread"] is not None]
    return {
        "points": len(rows),
        "spearman_goodput": rho,
        "spearman_throughput": _rho(rows, "throughput_rps"),
        "median_abs_err_throughput": _median_abs(rows, "err_throughput"),
        "median_abs_err_p99": _median_abs(rows, "err_p99"),
        "median_abs_err_throughput_unbatched": _median_abs([r for r in rows if not r["batching"]], "err_throughput"),
        "median_abs_err_throughput_batched": _median_abs([r for r in rows if r["batching"]], "err_throughput"),
        "median_abs_err_p99_batched": _median_abs([r for r in rows if r["batching"]], "err_p99"),
        "median_abs_err_batch_size": _median_abs(rows, "err_batch_size"),  # batched points, where counted
        "median_signed_err_throughput": statistics.median(
            r["err_throughput"] for r in rows if r["err_throughput"] is not None
        ),
        "measured_optimum": rows[best]["config"],
        "measured_optimum_predicted_rank": rank,
        "model_pick": rows[picked]["config"],
        "model_pick_measured_share_of_best": round(meas[picked] / meas[best], 3) if meas[best] else None,
        "measurement_noise_median_spread": statistics.median(spreads) if spreads else None,
    }


BOOTSTRAP_RESAMPLES = 10_000


def intervals(rows: list[dict[str, Any]], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Percentile-bootstrap 95% intervals of the headline figures, resampling points (few points: wide)."""
    import warnings

    import numpy as np
    from scipy.stats import ConstantInputWarning

    warnings.simplefilter("ignore", ConstantInputWarning)  # resamples of ties: skipped below
    rng = np.random.default_rng(seed)
    stats: dict[str, list[float]] = {k: [] for k in ("spearman_goodput", "spearman_throughput", "err_tp", "err_p99")}
    for _ in range(resamples):
        pick = [rows[i] for i in rng.integers(0, len(rows), len(rows))]
        for key, metric in (("spearman_goodput", "goodput_rps"), ("spearman_throughput", "throughput_rps")):
            rho = spearmanr([r[f"measured_{metric}"] for r in pick], [r[f"predicted_{metric}"] for r in pick])
            if not np.isnan(rho.statistic):  # a resample of ties has no rank correlation
                stats[key].append(float(rho.statistic))
        stats["err_tp"].append(_median_abs(pick, "err_throughput") or 0.0)
        stats["err_p99"].append(_median_abs(pick, "err_p99") or 0.0)
    names = {"err_tp": "median_abs_err_throughput", "err_p99": "median_abs_err_p99"}
    return {
        f"{names.get(k, k)}_ci95": [round(float(np.percentile(v, 2.5)), 3), round(float(np.percentile(v, 97.5)), 3)]
        for k, v in stats.items()
        if v
    }


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A per-point file this script wrote (--out), typed again: what --rescore scores without simulating."""
    with path.open() as f:
        raw = list(csv.DictReader(line for line in f if not line.startswith("#")))
    rows = []
    for r in raw:
        row: dict[str, Any] = {}
        for k, v in r.items():
            if k in ("config",):
                row[k] = v
            elif k == "batching":
                row[k] = v == "True"
            else:
                row[k] = float(v) if v not in ("", "None") else None
        rows.append(row)
    return rows


def verdicts(summary: dict[str, Any]) -> dict[str, bool]:
    return {
        "spearman_goodput": summary["spearman_goodput"] >= TARGETS["spearman_goodput"],
        "median_abs_err_throughput": summary["median_abs_err_throughput"] <= TARGETS["median_abs_err_throughput"],
        "median_abs_err_p99": summary["median_abs_err_p99"] <= TARGETS["median_abs_err_p99"],
        "optimum_in_top_5": summary["measured_optimum_predicted_rank"] <= TARGETS["top_k"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", type=Path, help="a record_grid.py file (a grid or a held-out set)")
    p.add_argument("--profile", type=Path, help="the model's profile, measured on the same host")
    p.add_argument("--rescore", type=Path, help="score a per-point file written by --out again (no simulation)")
    p.add_argument("--requests", type=int, default=2000, help="simulated answers per point")
    slo = p.add_mutually_exclusive_group()
    slo.add_argument("--slo-ms", type=float, help="judge goodput at this p99 bound (default: the file's)")
    slo.add_argument(
        "--slo-from-defaults",
        type=float,
        metavar="K",
        help="judge goodput at K x the measured p99 of TF Serving's defaults in the file (hosts differ in speed)",
    )
    p.add_argument(
        "--savedmodel-transport-only",
        action="store_true",
        help="predict as the model did before each served form had its own transport (the SavedModel's for all)",
    )
    p.add_argument(
        "--server-cpu-ms",
        type=float,
        metavar="MS",
        help="predict with this server CPU per request in every transport instead of the profile's (an ablation)",
    )
    p.add_argument(
        "--batch-op-cpu-ms",
        type=float,
        metavar="MS",
        help="predict with this CPU per batched request for the batch op instead of the profile's (an ablation)",
    )
    p.add_argument("--seed", type=int, default=0, help="the simulation's seed (its own noise, a check)")
    p.add_argument("--out", type=Path, help="write the per-point table here (CSV)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.rescore:
        rows = read_rows(a.rescore)
        summary = summarize(rows) | intervals(rows)
        met = verdicts(summary)
        print(f"{a.rescore.name}: {summary['points']} points (rescored, no simulation)")
        for key, value in summary.items():
            print(f"  {key}: {value}" + (f"  [{'met' if met[key] else 'MISSED'}]" if key in met else ""))
        print("\n".join(provenance("validate_model.py")))
        return
    if a.grid is None or a.profile is None:
        p.error("give --grid and --profile, or --rescore")
    header, points = load_points(a.grid)
    profile = Profile.from_json(json.loads(a.profile.read_text()))
    if a.savedmodel_transport_only:
        profile = replace(profile, transport=tuple(t for t in profile.transport if t.variant == SAVEDMODEL))
    if a.server_cpu_ms is not None:
        forced = tuple(replace(t, server_cpu_ms=a.server_cpu_ms) for t in profile.transport)
        profile = replace(profile, transport=forced)
    if a.batch_op_cpu_ms is not None:
        profile = replace(profile, batch_op_cpu_ms=a.batch_op_cpu_ms)
    if header.get("cpu_model") != profile.host.get("cpu_model"):
        sys.exit(
            f"error: {a.grid} was measured on {header.get('cpu_model')}, the profile on {profile.host.get('cpu_model')}"
        )
    if a.slo_from_defaults:
        slo_ms = defaults_slo(points, a.slo_from_defaults)
    else:
        slo_ms = a.slo_ms or float(header["slo_ms"])
    rows = validate(header, points, profile, a.requests, slo_ms, a.seed)
    summary = summarize(rows) | intervals(rows)
    met = verdicts(summary)
    if a.out:
        write_csv(a.out, "validate_model.py", rows)
    if a.json:
        doc = {"grid": str(a.grid), "profile": str(a.profile), "slo_ms": slo_ms, **summary, "met": met}
        print(json.dumps(doc, indent=2))
        return
    print(f"{a.grid.name}: {summary['points']} points, profile {a.profile.name}, goodput at p99 <= {slo_ms:g} ms")
    for key, value in summary.items():
        print(f"  {key}: {value}" + (f"  [{'met' if met[key] else 'MISSED'}]" if key in met else ""))
    print(f"  optimum_in_top_5: {met['optimum_in_top_5']}")
    print("\n".join(provenance("validate_model.py")))


if __name__ == "__main__":
    main()
