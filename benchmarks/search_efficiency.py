"""Tabular replay: compare search strategies against a grid of real measurements (record_grid.py).

A trial returns the recorded metrics of the nearest grid point, so strategies are compared over many
seeds without re-running hardware. Optuna-based strategies go through autotune's own Tuner (same space,
defaults first, same constraints); only the measurement is replayed. Every strategy's trial 1 is TF
Serving's defaults, as in a real job.

Reported per strategy (median over seeds): trials until the best feasible goodput found is within 5% of
the grid's best, and the hypervolume of the feasible Pareto set found (throughput up, p99 down, reference
point (0 rps, SLO)) as a fraction of the grid's, after 10/20/40 trials.

    python benchmarks/search_efficiency.py --quick        # 20 seeds, 40 trials; last line: the ratio
    python benchmarks/search_efficiency.py --seeds 50 --plots benchmarks/plots
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna

from autotune.knobs import ServingConfig
from autotune.models.resolve import ModelRef
from autotune.servers.backends import local_backend
from autotune.space import Host, build_space
from autotune.spec import KnobSpec, Study
from autotune.trial import MeasureSettings, TrialResult
from autotune.tuner import Tuner

DEFAULT_GRID = Path(__file__).parent / "data" / "grid-tiny.csv"
CHECKPOINTS = (10, 20, 40)


@dataclass(frozen=True)
class Point:
    """One recorded grid point."""

    batching: bool
    max_batch_size: int
    batch_timeout_micros: int
    num_batch_threads: int
    intra: int
    inter: int
    throughput_rps: float | None
    latency_p99_ms: float | None
    error_rate: float | None
    failure_reason: str

    def goodput(self, slo_ms: float, max_error_rate: float) -> float:
        """Throughput if the point met the SLO and error limit, else 0."""
        if self.failure_reason or self.throughput_rps is None or self.latency_p99_ms is None:
            return 0.0
        if self.latency_p99_ms > slo_ms or (self.error_rate or 0.0) > max_error_rate:
            return 0.0
        return self.throughput_rps


def _point(r: dict[str, str]) -> Point:
    def num(k: str) -> float | None:
        return float(r[k]) if r.get(k) not in (None, "") else None

    return Point(
        r["enable_batching"] == "True",
        int(r["max_batch_size"]),
        int(r["batch_timeout_micros"]),
        int(r["num_batch_threads"]),
        int(r["intra_op_threads"]),
        int(r["inter_op_threads"]),
        num("throughput_rps"),
        num("latency_p99_ms"),
        num("error_rate"),
        r["failure_reason"],
    )


class Grid:
    """The recorded table and nearest-point lookup (thread value 0 means the core count, as in TF)."""

    def __init__(self, path: Path, cpus: int) -> None:
        self.cpus = cpus
        self.points: list[Point] = []
        with path.open() as f:
            for r in csv.DictReader(f):
                self.points.append(_point(r))

    def _threads(self, n: int) -> int:
        return n or self.cpus

    def _features(self, batching: bool, mbs: int, timeout: int, nbt: int, intra: int, inter: int) -> tuple:
        if not batching:
            return (intra, inter)  # batching-off points are recorded for every thread value, 0 included
        return (
            math.log2(max(mbs, 1)) / 5,
            math.log10(max(timeout, 1)) / 5,
            (nbt - 1) / max(self.cpus - 1, 1),
            (self._threads(intra) - 1) / max(self.cpus - 1, 1),
            (self._threads(inter) - 1) / max(self.cpus - 1, 1),
        )

    def nearest(self, c: ServingConfig) -> Point:
        """The recorded point closest to config C."""
        want = self._features(
            c.enable_batching,
            c.max_batch_size,
            c.batch_timeout_micros,
            c.num_batch_threads,
            c.intra_op_threads,
            c.inter_op_threads,
        )
        same = [p for p in self.points if p.batching == c.enable_batching]
        return min(
            same,
            key=lambda p: sum(
                (a - b) ** 2
                for a, b in zip(
                    want,
                    self._features(
                        p.batching, p.max_batch_size, p.batch_timeout_micros, p.num_batch_threads, p.intra, p.inter
                    ),
                    strict=True,
                )
            ),
        )

    def config_of(self, p: Point) -> ServingConfig:
        if not p.batching:
            return ServingConfig(intra_op_threads=p.intra, inter_op_threads=p.inter)
        return ServingConfig(
            enable_batching=True,
            max_batch_size=p.max_batch_size,
            batch_timeout_micros=p.batch_timeout_micros,
            num_batch_threads=p.num_batch_threads,
            intra_op_threads=p.intra,
            inter_op_threads=p.inter,
        )


def feasible_front(points: list[Point], slo_ms: float, max_error_rate: float) -> list[tuple[float, float]]:
    """The non-dominated feasible (p99, throughput) pairs, by rising p99 (each faster one serves more)."""
    feasible = sorted(
        {
            (p.latency_p99_ms, p.throughput_rps)
            for p in points
            if p.goodput(slo_ms, max_error_rate) > 0 and p.latency_p99_ms is not None and p.throughput_rps is not None
        },
        key=lambda x: (x[0], -x[1]),
    )
    front: list[tuple[float, float]] = []
    for p99, thr in feasible:
        if not front or thr > front[-1][1]:
            front.append((p99, thr))
    return front


def hypervolume(points: list[Point], slo_ms: float, max_error_rate: float) -> float:
    """Area dominated by the feasible points in (p99 down, throughput up), reference (SLO, 0 rps)."""
    front = feasible_front(points, slo_ms, max_error_rate)
    edges = [p99 for p99, _ in front[1:]] + [slo_ms]  # each point's throughput holds until the next one's p99
    return sum(((nxt - p99) * thr for (p99, thr), nxt in zip(front, edges, strict=False)), 0.0)


# --- strategies: each returns the sequence of grid points it measured, defaults first -------------------


MAX_BATCH_HIGH = 32  # the grids' largest batch; the replayed space ends there too


def _study(sampler: str, seed: int, slo_ms: float, max_error_rate: float) -> Study:
    # The grids hold max_enqueued_batches at TF Serving's 100, so the replayed space fixes it there.
    return Study(
        source="replay",
        model="replay",
        slo_p99_ms=slo_ms,
        max_error_rate=max_error_rate,
        space={
            "max_batch_size": KnobSpec(low=1, high=MAX_BATCH_HIGH, log=True),
            "max_enqueued_batches": KnobSpec(value=100),
        },
        sampler=sampler,
        seed=seed,
    )


def optuna_strategy(sampler: str, make: Callable[[int], optuna.samplers.BaseSampler] | None = None):
    """A strategy that runs autotune's Tuner with SAMPLER (or a custom sampler MAKE(seed)) on the replay."""

    def run(grid: Grid, seed: int, budget: int, slo_ms: float, max_error_rate: float, concurrency: int) -> list[Point]:
        study = _study(sampler, seed, slo_ms, max_error_rate)
        space = build_space(study.space, Host(grid.cpus, 0))
        visited: list[Point] = []
        model = ModelRef("tiny", Path("."), 1, None)  # type: ignore[arg-type]

        def measure(config: ServingConfig, _say: object, _pid: object) -> TrialResult:
            p = grid.nearest(config)
            visited.append(p)
            metrics = {
                "throughput_rps": p.throughput_rps,
                "latency_p99_ms": p.latency_p99_ms,
                "error_rate": p.error_rate if p.error_rate is not None else 1.0,
            }
            return TrialResult("tiny", "replay", "grpc", config, [], metrics, [], p.failure_reason or None)

        tuner = Tuner(
            study,
            model,
            local_backend(),
            space,
            MeasureSettings(concurrency=concurrency, slo_ms=slo_ms),
            None,
            f"replay-{sampler}-{seed}",
            measure=measure,
            cpus=grid.cpus,
        )
        if make is not None:
            tuner.optuna.sampler = make(seed)
        tuner.run(budget, minutes=1e9)
        return visited

    return run


def grid_order(grid: Grid, seed: int, budget: int, slo_ms: float, max_error_rate: float, concurrency: int):
    """Grid search: every grid point once, in a random order (what Optuna's GridSampler does)."""
    default = grid.nearest(ServingConfig())
    rest = [p for p in grid.points if p != default]
    random.Random(seed).shuffle(rest)
    return [default, *rest][:budget]


def hill_climb(grid: Grid, seed: int, budget: int, slo_ms: float, max_error_rate: float, concurrency: int):
    """Model Analyzer's quick search, on our knobs: from the defaults, move to the best neighbour on the
    grid's value ladders while goodput improves (ties broken by lower p99); restart at random when stuck."""
    rng = random.Random(seed)
    ladders = {
        "max_batch_size": sorted({p.max_batch_size for p in grid.points if p.batching}),
        "batch_timeout_micros": sorted({p.batch_timeout_micros for p in grid.points if p.batching}),
        "num_batch_threads": sorted({p.num_batch_threads for p in grid.points if p.batching}),
        "intra": sorted({p.intra for p in grid.points}),
        "inter": sorted({p.inter for p in grid.points}),
    }
    visited: list[Point] = []
    seen: set[Point] = set()

    def score(p: Point) -> tuple[float, float]:
        return (p.goodput(slo_ms, max_error_rate), -(p.latency_p99_ms or 1e9))

    def visit(p: Point) -> None:
        if p not in seen and len(visited) < budget:
            seen.add(p)
            visited.append(p)

    def neighbours(p: Point) -> list[Point]:
        out = []
        if not p.batching:  # turning batching on starts at the smallest batch
            out.append(
                grid.nearest(
                    ServingConfig(
                        enable_batching=True,
                        max_batch_size=ladders["max_batch_size"][0],
                        batch_timeout_micros=ladders["batch_timeout_micros"][0],
                        num_batch_threads=ladders["num_batch_threads"][-1],
                        intra_op_threads=p.intra,
                        inter_op_threads=p.inter,
                    )
                )
            )
        for knob, values in ladders.items():
            if knob not in ("intra", "inter") and not p.batching:
                continue
            cur = getattr(p, knob)
            if cur not in values:
                continue
            i = values.index(cur)
            for j in (i - 1, i + 1):
                if 0 <= j < len(values):
                    c = grid.config_of(p)
                    field = {"intra": "intra_op_threads", "inter": "inter_op_threads"}.get(knob, knob)
                    out.append(grid.nearest(c.replace(**{field: values[j]})))
        return out

    current = grid.nearest(ServingConfig())
    visit(current)
    while len(visited) < budget:
        options = [n for n in neighbours(current) if n not in seen]
        for n in options:
            visit(n)
        better = [n for n in options if score(n) > score(current)]
        if better:
            current = max(better, key=score)
            continue
        fresh = [p for p in grid.points if p not in seen]
        if not fresh:
            break
        current = rng.choice(fresh)
        visit(current)
    return visited


STRATEGIES = {
    "autotune": optuna_strategy("autotune"),
    "random": optuna_strategy("random"),
    "grid": grid_order,
    "tpe": optuna_strategy("tpe"),
    "tpe-optuna-default": optuna_strategy("tpe", lambda seed: optuna.samplers.TPESampler(seed=seed)),
    "nsga2": optuna_strategy("nsga2"),
    "hill-climb": hill_climb,
}


def gp_strategy():
    """Optuna's GP sampler when torch and scipy are installed (it needs both), else None."""
    try:
        import scipy  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return None
    return optuna_strategy("tpe", lambda seed: optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False))


def trials_to(points: list[Point], target: float, slo_ms: float, max_error_rate: float, budget: int) -> int:
    """1-based trial at which the best goodput so far reached TARGET; budget+1 when it never did."""
    best = 0.0
    for i, p in enumerate(points, 1):
        best = max(best, p.goodput(slo_ms, max_error_rate))
        if best >= target:
            return i
    return budget + 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", type=Path, default=DEFAULT_GRID)
    p.add_argument("--cpus", type=int, default=2, help="cores of the host the grid was recorded on")
    p.add_argument("--concurrency", type=int, default=8, help="the load the grid was recorded at")
    p.add_argument("--slo-ms", type=float, default=100.0)
    p.add_argument("--max-error-rate", type=float, default=0.01)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--budget", type=int, default=40)
    p.add_argument("--quick", action="store_true", help="20 seeds, 40 trials (under 5 minutes)")
    p.add_argument("--only", default="", help="comma-separated strategies")
    p.add_argument("--plots", type=Path, help="write convergence plots (PNG) here")
    a = p.parse_args()
    if a.quick:
        a.seeds, a.budget = 20, 40
    if not a.grid.is_file():
        raise SystemExit(f"error: grid {a.grid} not found (record one with benchmarks/record_grid.py)")

    grid = Grid(a.grid, a.cpus)
    strategies = dict(STRATEGIES)
    gp = gp_strategy()
    if a.quick and "gp" not in a.only.split(","):
        # GP costs ~4 minutes of the 20x40 replay on 2 cores, which would break --quick's 5-minute bound.
        print("gp: left out of --quick (run without --quick, or --only gp)", file=sys.stderr)
    elif gp is not None:
        strategies["gp"] = gp
    else:
        print(
            "gp: skipped, Optuna's GPSampler needs torch and scipy (pip install torch==2.13.0 scipy)", file=sys.stderr
        )
    if a.only:
        strategies = {k: v for k, v in strategies.items() if k in a.only.split(",")}

    best = max(pt.goodput(a.slo_ms, a.max_error_rate) for pt in grid.points)
    target = 0.95 * best
    grid_hv = hypervolume(grid.points, a.slo_ms, a.max_error_rate)
    near = sum(pt.goodput(a.slo_ms, a.max_error_rate) >= target for pt in grid.points)
    feasible = sum(pt.goodput(a.slo_ms, a.max_error_rate) > 0 for pt in grid.points)
    print(
        f"grid {a.grid.name}: {len(grid.points)} points, {feasible} feasible under p99 <= {a.slo_ms:g} ms, "
        f"best goodput {best:.1f} rps, {near} points within 5% of it; defaults "
        f"{grid.nearest(ServingConfig()).goodput(a.slo_ms, a.max_error_rate):.1f} rps"
    )
    print(
        f"{'strategy':<20} {'trials-to-95% median':>20} {'p25-p75':>9} {'miss':>5}  hypervolume/grid at "
        + "/".join(map(str, CHECKPOINTS))
    )
    medians: dict[str, float] = {}
    curves: dict[str, list[list[float]]] = {}
    hv_curves: dict[str, list[list[float]]] = {}
    fronts: dict[str, list[Point]] = {}
    for name, run in strategies.items():
        started = time.monotonic()
        counts, hvs, curve, hv_curve = [], {c: [] for c in CHECKPOINTS}, [], []
        for seed in range(a.seeds):
            pts = run(grid, seed, a.budget, a.slo_ms, a.max_error_rate, a.concurrency)
            counts.append(trials_to(pts, target, a.slo_ms, a.max_error_rate, a.budget))
            for c in CHECKPOINTS:
                if c <= a.budget:
                    hvs[c].append(hypervolume(pts[:c], a.slo_ms, a.max_error_rate) / grid_hv)
            running, best_so_far = [], 0.0
            for pt in pts:
                best_so_far = max(best_so_far, pt.goodput(a.slo_ms, a.max_error_rate))
                running.append(best_so_far / best)
            curve.append(running + [running[-1]] * (a.budget - len(running)))
            hv_run = [hypervolume(pts[:i], a.slo_ms, a.max_error_rate) / grid_hv for i in range(1, len(pts) + 1)]
            hv_curve.append(hv_run + [hv_run[-1]] * (a.budget - len(hv_run)))
            if seed == 0:
                fronts[name] = pts[:20]
        medians[name] = statistics.median(counts)
        curves[name] = curve
        hv_curves[name] = hv_curve
        q = statistics.quantiles(counts, n=4) if len(counts) > 1 else [counts[0]] * 3
        misses = sum(c > a.budget for c in counts)
        hv_text = "/".join(f"{statistics.median(v):.2f}" if v else "-" for v in hvs.values())
        print(
            f"{name:<20} {medians[name]:>20g} {q[0]:>4g}-{q[2]:<4g} {misses:>5}  {hv_text}"
            f"   ({time.monotonic() - started:.0f}s)",
            flush=True,
        )
    if a.plots:
        plot(curves, hv_curves, a.plots, a.budget, a.grid.stem)
        plot_fronts(grid, fronts, a.plots, a.slo_ms, a.max_error_rate, a.grid.stem)
    if "autotune" in medians and "random" in medians:
        ours, rnd = medians["autotune"], medians["random"]
        print(f"trials-to-95%: ours={ours:g} random={rnd:g} ratio={ours / rnd:.2f}")


def plot(
    curves: dict[str, list[list[float]]], hv_curves: dict[str, list[list[float]]], out: Path, budget: int, tag: str
) -> None:
    """Median best goodput so far and hypervolume (fractions of the grid's) against trials, per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = list(range(1, budget + 1))
    for ax, data, label in (
        (axes[0], curves, "best goodput so far / grid best"),
        (axes[1], hv_curves, "hypervolume found / grid's"),
    ):
        for name, runs in data.items():
            med = [statistics.median(r[i] for r in runs) for i in range(budget)]
            ax.plot(xs, med, label=name, linewidth=2.4 if name == "autotune" else 1.2)
        ax.set_xlabel("trials")
        ax.set_ylabel(f"{label} (median over seeds)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].axhline(0.95, color="grey", linestyle=":", linewidth=1)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"search strategies replayed on {tag}")
    fig.tight_layout()
    fig.savefig(out / f"search_convergence_{tag}.png", dpi=120)
    plt.close(fig)


def plot_fronts(
    grid: Grid, fronts: dict[str, list[Point]], out: Path, slo_ms: float, max_error_rate: float, tag: str
) -> None:
    """The grid (grey), its feasible Pareto front, and what autotune and random found in 20 trials (seed 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ok = [p for p in grid.points if p.latency_p99_ms is not None and p.throughput_rps is not None]
    ax.scatter([p.latency_p99_ms for p in ok], [p.throughput_rps for p in ok], s=8, color="0.75", label="grid")
    for name, style in (("grid", "k-"), ("autotune", "C0o-"), ("random", "C1s--")):
        pts = grid.points if name == "grid" else fronts.get(name, [])
        f = feasible_front(pts, slo_ms, max_error_rate)
        if f:
            ax.plot(
                [x for x, _ in f],
                [y for _, y in f],
                style,
                label=f"{name} front" + ("" if name == "grid" else ", 20 trials"),
            )
    ax.axvline(slo_ms, color="red", linestyle=":", linewidth=1, label="SLO")
    ax.set_xscale("log")
    ax.set_xlabel("p99 latency, ms (log)")
    ax.set_ylabel("throughput, rps")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / f"pareto_fronts_{tag}.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
