"""What a recorded grid holds, as markdown: how it was recorded, how noisy its repeats are, what each
measurement cost, and the best point against TF Serving's defaults (Welch's t on the repeats).

    python benchmarks/grid_summary.py benchmarks/data/grid-*.csv
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from _common import changed_knobs
from grid_file import read_grid
from search_efficiency import Grid, feasible_front

from autotune.knobs import ServingConfig
from autotune.significance import compare_metric


def _cv(xs: list[float]) -> float | None:
    return statistics.stdev(xs) / statistics.mean(xs) if len(xs) >= 2 and statistics.mean(xs) > 0 else None


def _repeats(grid: Grid) -> str:
    counts = sorted({len(p.draws) for p in grid.points})
    return f"{counts[0]}-{counts[-1]}" if len(counts) > 1 else str(counts[0])


def _cvs(grid: Grid, metric: str) -> list[float]:
    """Each point's CV of METRIC over its repeats (points with fewer than two figures left out)."""
    out = []
    for p in grid.points:
        c = _cv([v for d in p.draws if (v := getattr(d, metric)) is not None])
        if c is not None:
            out.append(c)
    return out


def _med(rows: list[dict[str, str]], key: str) -> float:
    vals = [float(r[key]) for r in rows if r.get(key)]
    return statistics.median(vals) if vals else float("nan")


def summarize(path: Path) -> list[str]:
    header, rows = read_grid(path)
    grid = Grid(path)
    cvs = _cvs(grid, "throughput_rps")
    p99_cvs = _cvs(grid, "latency_p99_ms")
    if not cvs or not p99_cvs:
        raise SystemExit(f"error: {path}: no point has two measurements yet")
    unstable = sum(r.get("stable") == "False" for r in rows)
    failed = sum(bool(r.get("failure_reason")) for r in rows)
    remeasured = sum(r.get("remeasured") == "True" for r in rows)
    foreign = max((float(r["foreign_cores"]) for r in rows if r.get("foreign_cores")), default=0.0)
    best = grid.best()
    default = next(p for p in grid.points if p.config == ServingConfig())
    slo, err = grid.slo_ms, grid.max_error_rate
    floor, _ = grid.noise_floor()

    def vs(metric: str) -> str:
        a, b = ([getattr(d, metric) for d in p.draws] for p in (default, best))
        c = compare_metric(metric, a, b)
        if c.ratio is None or c.ratio_ci95 is None:
            return "n/a"
        return f"x{c.ratio:.2f} ({c.ratio_ci95[0]:.2f}-{c.ratio_ci95[1]:.2f}) {c.verdict.value}"

    name = f"{header.get('model')} ({header.get('protocol')}, c={header.get('concurrency')}, p99 <= {slo:g} ms)"
    return [
        f"| {name} | {len(grid.points)} x {_repeats(grid)} = {len(rows)} "
        f"| {unstable} / {remeasured} / {failed} | {statistics.median(cvs):.1%} ({max(cvs):.0%}) "
        f"| {statistics.median(p99_cvs):.1%} | {floor:.1%} | {foreign:.2f} "
        f"| {_med(rows, 'setup_s'):.1f} / {_med(rows, 'measure_s'):.1f} / {_med(rows, 'teardown_s'):.1f} |",
        f"| {name} | {sum(grid.goodput(p) > 0 for p in grid.points)} "
        f"| {len(feasible_front(grid.points, slo, err))} | {grid.goodput(default):.1f} "
        f"| {grid.goodput(best):.1f}: `{_knobs(best.config)}` | {vs('throughput_rps')} | {vs('latency_p99_ms')} |",
    ]


def _knobs(c: ServingConfig) -> str:
    changed = changed_knobs(c.to_dict())
    return " ".join(f"{k}={v}" for k, v in changed.items() if k != "gpu_memory_fraction") or "defaults"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grids", type=Path, nargs="+")
    a = p.parse_args()
    rows = [summarize(g) for g in a.grids]
    print(
        "| grid | points x repeats | unstable / re-measured / failed | throughput CV median (max) "
        "| p99 CV median | noise floor | max foreign cores | setup / measure / teardown s (median) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(r[0] for r in rows))
    print()
    print(
        "| grid | feasible points | front points | defaults goodput rps | best goodput rps: config "
        "| best/defaults throughput (95% CI) | best/defaults p99 (95% CI) |"
    )
    print("| --- | ---: | ---: | ---: | --- | --- | --- |")
    print("\n".join(r[1] for r in rows))


if __name__ == "__main__":
    main()
