"""Tabular replay: compare search strategies against a grid of real, repeated measurements (record_grid.py).

A trial measures the nearest grid point (ties broken at random) and gets one of that point's recorded
repeats, drawn at random: a strategy sees the noise a live job sees. What it *found* is judged on the
points' medians: trials until it first measured a point whose median goodput is within 5% of the grid's
best median or, where the repeats are too noisy to tell 5% apart, within the grid's noise floor (the
smallest difference the pooled spread of the repeats resolves at 95%). Hypervolume (throughput up, p99
down, reference (0 rps, SLO)) of the points found, on their medians, as a fraction of the grid's, after
10/20/40 trials; it does not count for a grid whose feasible front has fewer than 3 points. Optuna
strategies go through autotune's own Tuner (same space, defaults first, same constraints); only the
measurement is replayed. The grid file's `#` header says how it was recorded (cores, load, SLO), so no
other flag is needed.

    python benchmarks/search_efficiency.py --quick --grid benchmarks/data/grid-resnet.csv  # last line: ratio
    python benchmarks/search_efficiency.py --seeds 50 --plots benchmarks/plots --shuffle-check
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from grid_file import config_of, point_key, read_grid

from autotune.knobs import ServingConfig
from autotune.measure import MeasureSettings, TrialResult
from autotune.models.resolve import ModelRef
from autotune.pareto import goodput
from autotune.seeds import heuristic_seeds
from autotune.servers.backends import local_backend
from autotune.space import Host, build_space
from autotune.spec import KnobSpec, Study
from autotune.tuner import Tuner, is_feasible

DEFAULT_GRID = Path(__file__).parent / "data" / "grid-tiny.csv"
CHECKPOINTS = (10, 20, 40)
NEAR = 0.95  # "found the optimum": within 5% of the best median goodput


@dataclass(frozen=True)
class Draw:
    """One recorded measurement of a grid point."""

    throughput_rps: float | None
    latency_p99_ms: float | None
    error_rate: float | None
    cpu_cores: float | None
    stable: bool
    failure_reason: str
    mean_batch_size: float | None = None  # the server's own count (files recorded with --monitoring)

    def goodput(self, slo_ms: float, max_error_rate: float) -> float:
        """Throughput if this measurement was stable and met the SLO and error limit, else 0 (the tuner's rule)."""
        m = self.metrics()
        ok = not self.failure_reason and is_feasible(m, slo_ms, max_error_rate, MeasureSettings().min_achieved_fraction)
        return goodput(m, ok)

    def metrics(self) -> dict:
        return {
            "throughput_rps": self.throughput_rps,
            "latency_p99_ms": self.latency_p99_ms,
            "error_rate": self.error_rate if self.error_rate is not None else 1.0,
            "cpu_cores": self.cpu_cores,
            "stable": self.stable,
        }


def _median(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


@dataclass(frozen=True)
class Point:
    """A grid point: its knobs and every recorded measurement of it."""

    key: tuple
    config: ServingConfig
    draws: tuple[Draw, ...] = field(compare=False)

    def goodput(self, slo_ms: float, max_error_rate: float) -> float:
        """The median of the draws' goodputs: the point's goodput, noise aside."""
        return statistics.median(d.goodput(slo_ms, max_error_rate) for d in self.draws)

    @property
    def throughput_rps(self) -> float | None:
        return _median([d.throughput_rps for d in self.draws])

    @property
    def latency_p99_ms(self) -> float | None:
        return _median([d.latency_p99_ms for d in self.draws])

    @property
    def mean_batch_size(self) -> float | None:
        return _median([d.mean_batch_size for d in self.draws])

    def front_coords(self, slo_ms: float, max_error_rate: float) -> tuple[float, float] | None:
        """(p99, throughput) medians over the draws that met the SLO: where the point sits on a front."""
        ok = [d for d in self.draws if d.goodput(slo_ms, max_error_rate) > 0]
        if not ok or self.goodput(slo_ms, max_error_rate) <= 0:
            return None
        return statistics.median(d.latency_p99_ms for d in ok), statistics.median(d.throughput_rps for d in ok)

    def spread(self, metric: str) -> tuple[float, float] | None:
        """Lowest and highest recorded value of METRIC (the whiskers of a front plot)."""
        vals = [getattr(d, metric) for d in self.draws if getattr(d, metric) is not None]
        return (min(vals), max(vals)) if vals else None


def _draw(r: dict[str, str]) -> Draw:
    def num(k: str) -> float | None:
        return float(r[k]) if r.get(k) not in (None, "") else None

    return Draw(
        num("throughput_rps"),
        num("latency_p99_ms"),
        num("error_rate"),
        num("cpu_cores"),
        r.get("stable", "True") == "True",
        r.get("failure_reason", ""),
        num("server_mean_batch_size"),
    )


class GridError(Exception):
    """A grid file the replay cannot use."""


def _row_order(r: dict[str, str]) -> tuple:
    # Repeat number first; the rest only breaks ties, so the order never depends on the file.
    return (int(r.get("repeat") or 0), r.get("measured_at") or "", sorted(r.items()))


class Grid:
    """The recorded points and nearest-point lookup (thread value 0 means the core count, as in TF)."""

    def __init__(self, path: Path, shuffle_seed: int | None = None) -> None:
        self.header, rows = read_grid(path)
        missing = [k for k in ("cpus", "concurrency", "slo_ms", "max_error_rate") if k not in self.header]
        if missing or (rows and not {"repeat", "max_enqueued_batches"} <= rows[0].keys()):
            raise GridError(f"{path}: not a grid of record_grid.py (no {', '.join(missing) or 'repeat column'})")
        if shuffle_seed is not None:
            random.Random(shuffle_seed).shuffle(rows)
        self.cpus = int(self.header["cpus"])
        self.concurrency = int(self.header["concurrency"])
        self.slo_ms = float(self.header["slo_ms"])
        self.max_error_rate = float(self.header["max_error_rate"])
        grouped: dict[tuple, list[dict[str, str]]] = {}
        for r in rows:
            if r.get("failure_reason") != "interrupted":  # Ctrl-C during recording is not a measurement
                grouped.setdefault(point_key(r), []).append(r)
        # Sorted by knobs and repeat number, so nothing downstream can depend on the file's row order.
        self.points = [
            Point(k, config_of(rs[0]), tuple(_draw(r) for r in sorted(rs, key=_row_order)))
            for k, rs in sorted(grouped.items(), key=lambda kv: repr(kv[0]))
        ]
        kinds = {p.config.enable_batching for p in self.points}
        if kinds != {False, True} or ServingConfig() not in {p.config for p in self.points}:
            raise GridError(f"{path}: a grid needs TF Serving's defaults and points with and without batching")
        if self.goodput(self.best()) <= 0:
            raise GridError(f"{path}: no point meets p99 <= {self.slo_ms:g} ms: nothing to find")
        self._floor: tuple[float, int] | None = None
        self.max_batch = max((p.config.max_batch_size for p in self.points if p.config.enable_batching), default=32)
        self.max_enqueued = max(
            (p.config.max_enqueued_batches for p in self.points if p.config.enable_batching), default=10
        )

    def goodput(self, p: Point) -> float:
        return p.goodput(self.slo_ms, self.max_error_rate)

    def _threads(self, n: int) -> int:
        return n or self.cpus

    def _features(self, c: ServingConfig) -> tuple:
        if not c.enable_batching:
            return (self._threads(c.intra_op_threads), self._threads(c.inter_op_threads))
        return (
            math.log2(max(c.max_batch_size, 1)) / 5,
            math.log10(max(c.batch_timeout_micros, 1)) / 5,
            (c.num_batch_threads - 1) / max(self.cpus - 1, 1),
            (self._threads(c.intra_op_threads) - 1) / max(self.cpus - 1, 1),
            (self._threads(c.inter_op_threads) - 1) / max(self.cpus - 1, 1),
        )

    def nearest(self, c: ServingConfig, rng: random.Random) -> Point:
        """The recorded point closest to config C; equally close points are chosen between at random."""
        key = point_key({**c.to_dict(), "enable_batching": c.enable_batching})
        exact = [p for p in self.points if p.key == key]
        if exact:  # thread value 0 and the core count behave alike, but the grid may hold both
            return exact[0]
        want = self._features(c)
        same = [p for p in self.points if p.config.enable_batching == c.enable_batching]
        dist = {p: sum((a - b) ** 2 for a, b in zip(want, self._features(p.config), strict=True)) for p in same}
        best = min(dist.values())
        return rng.choice([p for p in same if dist[p] - best < 1e-12])

    def best(self) -> Point:
        return max(self.points, key=self.goodput)

    def noise_floor(self) -> tuple[float, int]:
        """(smallest relative goodput difference two grid points can be told apart by, pooled df).

        The repeats' spread pooled over every feasible point (log throughput, one variance for the grid):
        the medians of two points of n repeats differ significantly (95%) only beyond t * s * m * sqrt(2/n),
        where m is how much wider a median's spread is than a mean's for n normal draws.
        """
        if self._floor is None:
            self._floor = self._noise_floor()
        return self._floor

    def _noise_floor(self) -> tuple[float, int]:
        ss, df, sizes = 0.0, 0, []
        for p in self.points:
            logs = [math.log(g) for d in p.draws if (g := d.goodput(self.slo_ms, self.max_error_rate)) > 0]
            if len(logs) >= 2:
                mean = sum(logs) / len(logs)
                ss += sum((x - mean) ** 2 for x in logs)
                df += len(logs) - 1
                sizes.append(len(logs))
        if df == 0:
            return 0.0, 0
        from scipy import stats

        n = round(statistics.median(sizes))
        half = float(stats.t.ppf(0.975, df)) * math.sqrt(ss / df) * _median_se_factor(n) * math.sqrt(2 / n)
        return 1 - math.exp(-half), df

    def target_fraction(self) -> float:
        """Found the optimum = a point with median goodput at least this fraction of the best's: 95%, or
        lower where the noise floor is wider than 5% (closer than the floor is a tie)."""
        return min(NEAR, 1 - self.noise_floor()[0])

    def targets(self) -> set[Point]:
        """The points that count as the optimum."""
        bar = self.target_fraction() * self.goodput(self.best())
        return {p for p in self.points if self.goodput(p) >= bar}


def _median_se_factor(n: int) -> float:
    """Standard error of the median of N normal draws over that of their mean (1 for N <= 2; ~1.25 for large N)."""
    if n <= 2:
        return 1.0
    import numpy as np

    draws = np.random.default_rng(0).standard_normal((20000, n))
    return float(np.median(draws, axis=1).std() / draws.mean(axis=1).std())


def feasible_front(points: list[Point], slo_ms: float, max_error_rate: float) -> list[tuple[Point, float, float]]:
    """The non-dominated feasible points as (point, p99, throughput) on their feasible draws' medians, by
    rising p99 (each faster one serves more)."""
    placed = {p: xy for p in set(points) if (xy := p.front_coords(slo_ms, max_error_rate)) is not None}
    front: list[tuple[Point, float, float]] = []
    for p, (p99, thr) in sorted(placed.items(), key=lambda kv: (kv[1][0], -kv[1][1], repr(kv[0].key))):
        if not front or thr > front[-1][2]:
            front.append((p, p99, thr))
    return front


def hypervolume(points: list[Point], slo_ms: float, max_error_rate: float) -> float:
    """Area dominated by the feasible points' medians in (p99 down, throughput up), reference (SLO, 0 rps)."""
    front = feasible_front(points, slo_ms, max_error_rate)
    edges = [p99 for _, p99, _ in front[1:]] + [slo_ms]  # each throughput holds until the next p99
    return sum(((nxt - p99) * thr for (_, p99, thr), nxt in zip(front, edges, strict=False)), 0.0)


# --- strategies: each returns the grid points it measured, in order, defaults first --------------------


def _study(sampler: str, seed: int, grid: Grid) -> Study:
    # The grids hold max_enqueued_batches at one value (TF Serving's default), so the replayed space fixes it.
    return Study(
        source="replay",
        model="replay",
        slo_p99_ms=grid.slo_ms,
        max_error_rate=grid.max_error_rate,
        space={
            "max_batch_size": KnobSpec(low=1, high=grid.max_batch, log=True),
            "max_enqueued_batches": KnobSpec(value=grid.max_enqueued),
        },
        sampler=sampler,
        seed=seed,
    )


Strategy = Callable[[Grid, int, int], list[Point]]


Seeds = Callable[[dict, int, int | None], list[ServingConfig]]


def optuna_strategy(
    sampler: str, make: Callable[[int], optuna.samplers.BaseSampler] | None = None, seeds: Seeds | None = None
) -> Strategy:
    """A strategy that runs autotune's Tuner with SAMPLER (or a custom sampler MAKE(seed)) on the replay;
    SEEDS(space, cpus, concurrency) replaces the first configs after the defaults."""

    def run(grid: Grid, seed: int, budget: int) -> list[Point]:
        rng = random.Random(seed)  # reproducible per seed: ties and draws
        study = _study(sampler, seed, grid)
        space = build_space(study.space, Host(grid.cpus, 0))
        visited: list[Point] = []
        model = ModelRef("replay", Path("."), 1, None)  # type: ignore[arg-type]

        def measure(config: ServingConfig, _say: object, _pid: object) -> TrialResult:
            p = grid.nearest(config, rng)
            visited.append(p)
            d = rng.choice(p.draws)
            return TrialResult("replay", "replay", "replay", config, [], d.metrics(), [], d.failure_reason or None)

        tuner = (_SeededTuner if seeds else Tuner)(
            study,
            model,
            local_backend(),
            space,
            MeasureSettings(concurrency=grid.concurrency, slo_ms=grid.slo_ms),
            None,
            f"replay-{sampler}-{seed}",
            measure=measure,
            cpus=grid.cpus,
        )
        if make is not None:
            tuner.optuna.sampler = make(seed)
        if seeds is not None:
            tuner.seeds = seeds  # type: ignore[attr-defined]
        tuner.run(budget, minutes=1e9)
        return visited

    return run


class _SeededTuner(Tuner):
    seeds: Seeds

    def first_configs(self, previous: list[dict], budget: int) -> list[ServingConfig]:
        return [ServingConfig(), *self.seeds(self.space, self.cpus, self.settings.concurrency)][:budget]


def seeds_before_issue_13(space: dict, cpus: int, concurrency: int | None) -> list[ServingConfig]:
    """The autotune sampler's seeds until issue 13: its batched seeds ran 1 intra-op and 1 inter-op thread
    (one op at a time on one core), kept here to show what the change bought."""
    return [
        c.replace(inter_op_threads=1) if c.enable_batching and c.intra_op_threads == 1 else c
        for c in heuristic_seeds(space, cpus, concurrency)
    ]


def grid_order(grid: Grid, seed: int, budget: int) -> list[Point]:
    """Grid search: every grid point once, in a random order (what Optuna's GridSampler does)."""
    rng = random.Random(seed)
    default = grid.nearest(ServingConfig(), rng)
    rest = [p for p in grid.points if p != default]
    rng.shuffle(rest)
    return [default, *rest][:budget]


def hill_climb(grid: Grid, seed: int, budget: int) -> list[Point]:
    """Model Analyzer's quick search, on our knobs: from the defaults, move to the best neighbour on the
    grid's value ladders while the measured goodput improves (ties broken by lower p99); restart at random
    when stuck. It judges by the draws it measured, as a live search must."""
    rng = random.Random(seed)
    batched = [p.config for p in grid.points if p.config.enable_batching]
    ladders = {
        "max_batch_size": sorted({c.max_batch_size for c in batched}),
        "batch_timeout_micros": sorted({c.batch_timeout_micros for c in batched}),
        "num_batch_threads": sorted({c.num_batch_threads for c in batched}),
        "intra_op_threads": sorted({p.config.intra_op_threads for p in grid.points}),
        "inter_op_threads": sorted({p.config.inter_op_threads for p in grid.points}),
    }
    visited: list[Point] = []
    seen: dict[Point, tuple[float, float]] = {}

    def visit(p: Point) -> None:
        if p not in seen and len(visited) < budget:
            d = rng.choice(p.draws)
            seen[p] = (d.goodput(grid.slo_ms, grid.max_error_rate), -(d.latency_p99_ms or 1e9))
            visited.append(p)

    def neighbours(p: Point) -> list[Point]:
        c = p.config
        out = []
        if not c.enable_batching:  # turning batching on starts at the smallest batch
            out.append(
                grid.nearest(
                    c.replace(
                        enable_batching=True,
                        max_batch_size=ladders["max_batch_size"][0],
                        batch_timeout_micros=ladders["batch_timeout_micros"][0],
                        num_batch_threads=ladders["num_batch_threads"][-1],
                    ),
                    rng,
                )
            )
        for knob, values in ladders.items():
            if not c.enable_batching and not knob.endswith("_op_threads"):
                continue
            cur = getattr(c, knob)
            if cur not in values:
                continue
            i = values.index(cur)
            out += [grid.nearest(c.replace(**{knob: values[j]}), rng) for j in (i - 1, i + 1) if 0 <= j < len(values)]
        return out

    current = grid.nearest(ServingConfig(), rng)
    visit(current)
    while len(visited) < budget:
        options = [n for n in neighbours(current) if n not in seen]
        for n in options:
            visit(n)
        better = [n for n in options if n in seen and seen[n] > seen[current]]
        if better:
            current = max(better, key=lambda n: seen[n])
            continue
        fresh = [p for p in grid.points if p not in seen]
        if not fresh:
            break
        current = rng.choice(fresh)
        visit(current)
    return visited


STRATEGIES: dict[str, Strategy] = {
    "autotune": optuna_strategy("autotune"),
    "random": optuna_strategy("random"),
    "autotune-seeds-before": optuna_strategy("tpe", seeds=seeds_before_issue_13),
    "grid": grid_order,
    "tpe": optuna_strategy("tpe"),
    "tpe-optuna-default": optuna_strategy("tpe", lambda seed: optuna.samplers.TPESampler(seed=seed)),
    "nsga2": optuna_strategy("nsga2"),
    "hill-climb": hill_climb,
}


def gp_strategy() -> Strategy | None:
    """Optuna's GP sampler when torch and scipy are installed (it needs both), else None."""
    try:
        import scipy  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return None
    return optuna_strategy("tpe", lambda seed: optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False))


def trials_to(points: list[Point], targets: set[Point], budget: int) -> int:
    """1-based trial at which a point of TARGETS was first measured; budget+1 when none was."""
    return next((i for i, p in enumerate(points, 1) if p in targets), budget + 1)


@dataclass
class Outcome:
    """One strategy over all seeds."""

    counts: list[int]
    hv: dict[int, list[float]]
    curves: list[list[float]]  # best median goodput found so far / grid best, per trial
    hv_curves: list[list[float]]
    first: list[Point]  # seed 0's first 20 points

    def quartiles(self) -> tuple[float, float, float]:
        q = statistics.quantiles(self.counts, n=4, method="inclusive") if len(self.counts) > 1 else [self.counts[0]] * 3
        return q[0], statistics.median(self.counts), q[2]


def replay(grid: Grid, run: Strategy, seeds: int, budget: int, targets: set[Point]) -> Outcome:
    """Run one strategy for SEEDS seeds of BUDGET trials and judge what it found on the points' medians."""
    slo, err = grid.slo_ms, grid.max_error_rate
    best = grid.goodput(grid.best())
    grid_hv = hypervolume(grid.points, slo, err)
    out = Outcome([], {c: [] for c in CHECKPOINTS if c <= budget}, [], [], [])
    for seed in range(seeds):
        pts = run(grid, seed, budget)
        out.counts.append(trials_to(pts, targets, budget))
        for c in out.hv:
            out.hv[c].append(hypervolume(pts[:c], slo, err) / grid_hv if grid_hv else 0.0)
        running, so_far = [], 0.0
        for p in pts:
            so_far = max(so_far, grid.goodput(p))
            running.append(so_far / best if best else 0.0)
        out.curves.append(running + [running[-1]] * (budget - len(running)))
        hv_run = [hypervolume(pts[:i], slo, err) / grid_hv if grid_hv else 0.0 for i in range(1, len(pts) + 1)]
        out.hv_curves.append(hv_run + [hv_run[-1]] * (budget - len(hv_run)))
        if seed == 0:
            out.first = pts[:20]
    return out


def describe(grid: Grid, path: Path) -> set[Point]:
    """Print what the grid holds and what counts as the optimum; return that set of points."""
    slo, err = grid.slo_ms, grid.max_error_rate
    best = grid.best()
    floor, df = grid.noise_floor()
    fraction = grid.target_fraction()
    targets = grid.targets()
    feasible = [p for p in grid.points if grid.goodput(p) > 0]
    front = feasible_front(grid.points, slo, err)
    draws = [len(p.draws) for p in grid.points]
    default = grid.nearest(ServingConfig(), random.Random(0))
    h = grid.header
    print(
        f"grid {path.name}: {h.get('model', '?')}, {h.get('protocol', '?')} c={grid.concurrency}, "
        f"{len(grid.points)} points x {min(draws)}-{max(draws)} repeats, recorded on {h.get('cpu_model', '?')} "
        f"({grid.cpus} cores) {h.get('started', '')}"
    )
    print(
        f"{len(feasible)} points feasible (median goodput > 0) under p99 <= {slo:g} ms, error rate <= {err:g}; "
        f"best median goodput {grid.goodput(best):.1f} rps ({best.config.to_dict()}); "
        f"defaults {grid.goodput(default):.1f} rps; feasible front {len(front)} points"
    )
    print(
        f"noise floor: two points differ significantly (95%) only beyond {floor:.1%} in goodput "
        f"(the repeats' spread pooled over the grid, {df} df)"
    )
    if fraction < NEAR:
        print(
            f"optimum: the top of the grid is a plateau inside the noise; found = a point within "
            f"{1 - fraction:.1%} of the best median (the noise floor, not 5%): {len(targets)} points"
        )
    else:
        print(f"optimum: found = a point within 5% of the best median: {len(targets)} points")
    return targets


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", type=Path, default=DEFAULT_GRID)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--budget", type=int, default=40)
    p.add_argument("--quick", action="store_true", help="20 seeds, 40 trials, autotune and random first")
    p.add_argument("--only", default="", help="comma-separated strategies")
    p.add_argument("--shuffle-check", action="store_true", help="replay ours and random again on shuffled rows")
    p.add_argument("--plots", type=Path, help="write convergence and front plots (PNG) here")
    a = p.parse_args()
    if a.quick:
        a.seeds, a.budget = 20, 40
    if not a.grid.is_file():
        raise SystemExit(f"error: grid {a.grid} not found (record one with benchmarks/record_grid.py)")
    if a.plots and a.seeds < 2:
        raise SystemExit("error: --plots needs --seeds 2 or more (it draws quartiles over seeds)")
    try:
        grid = Grid(a.grid)
    except GridError as exc:
        raise SystemExit(f"error: {exc}") from None
    targets = describe(grid, a.grid)
    front_size = len(feasible_front(grid.points, grid.slo_ms, grid.max_error_rate))

    strategies = dict(STRATEGIES)
    gp = gp_strategy()
    if a.quick and "gp" not in a.only.split(","):
        print("gp: left out of --quick (run without --quick, or --only gp)", file=sys.stderr)
    elif gp is not None:
        strategies["gp"] = gp
    else:
        print("gp: skipped, Optuna's GPSampler needs torch and scipy", file=sys.stderr)
    if a.only:
        strategies = {k: v for k, v in strategies.items() if k in a.only.split(",")}

    print(
        f"{'strategy':<20} {'trials-to-95% median':>20} {'IQR':>9} {'miss':>5}  hypervolume/grid (median) at "
        + "/".join(str(c) for c in CHECKPOINTS if c <= a.budget)
    )
    outcomes: dict[str, Outcome] = {}
    for name, run in strategies.items():
        started = time.monotonic()
        o = outcomes[name] = replay(grid, run, a.seeds, a.budget, targets)
        q1, med, q3 = o.quartiles()
        misses = sum(c > a.budget for c in o.counts)
        hv_text = "/".join(f"{statistics.median(v):.2f}" for v in o.hv.values()) if front_size >= 3 else "n/a"
        print(
            f"{name:<20} {med:>20g} {q1:>4g}-{q3:<4g} {misses:>5}  {hv_text}   ({time.monotonic() - started:.0f}s)",
            flush=True,
        )
    if front_size < 3:
        print(f"hypervolume: not counted, the grid's feasible front has {front_size} point(s) (fewer than 3)")
    if a.plots:
        plot(outcomes, a.plots, a.budget, a.grid.stem)
        plot_fronts(grid, outcomes, a.plots, a.grid.stem)
    if "autotune" not in outcomes or "random" not in outcomes:
        return
    ours, rnd = outcomes["autotune"].quartiles()[1], outcomes["random"].quartiles()[1]
    ratio = ours / rnd
    if a.shuffle_check:
        shuffled = Grid(a.grid, shuffle_seed=1)
        s_ours = replay(shuffled, STRATEGIES["autotune"], a.seeds, a.budget, shuffled.targets())
        s_rnd = replay(shuffled, STRATEGIES["random"], a.seeds, a.budget, shuffled.targets())
        s_ratio = s_ours.quartiles()[1] / s_rnd.quartiles()[1]
        moved = abs(s_ratio - ratio) / ratio
        print(
            f"row-shuffle check: ratio {ratio:.2f} on the file's order, {s_ratio:.2f} on shuffled rows "
            f"(moved {moved:.0%}; {'ok' if moved <= 0.10 else 'MOVED MORE THAN 10%'})"
        )
    hv = outcomes["autotune"].hv
    hv_last = statistics.median(hv[40]) if front_size >= 3 and 40 in hv else None
    checks = [
        f"ours <= 0.5x random: {'met' if ratio <= 0.5 else 'missed'}",
        f"ours <= 15: {'met' if ours <= 15 else 'missed'}",
        "hypervolume at 40 >= 0.9: " + ("n/a" if hv_last is None else ("met" if hv_last >= 0.9 else "missed")),
    ]
    print("targets: " + "; ".join(checks))
    print(f"trials-to-95%: ours={ours:g} random={rnd:g} ratio={ratio:.2f}")


def plot(outcomes: dict[str, Outcome], out: Path, budget: int, tag: str) -> None:
    """Best median goodput found so far and hypervolume against trials: median over seeds, IQR band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = list(range(1, budget + 1))
    for ax, attr, label in (
        (axes[0], "curves", "best median goodput found / grid best"),
        (axes[1], "hv_curves", "hypervolume found / grid's"),
    ):
        for i, (name, o) in enumerate(outcomes.items()):
            runs = getattr(o, attr)
            qs = [statistics.quantiles([r[t] for r in runs], n=4, method="inclusive") for t in range(budget)]
            ax.plot(xs, [q[1] for q in qs], color=f"C{i}", label=name, linewidth=2.4 if name == "autotune" else 1.2)
            if name in ("autotune", "random"):
                ax.fill_between(xs, [q[0] for q in qs], [q[2] for q in qs], color=f"C{i}", alpha=0.15)
        ax.set_xlabel("trials")
        ax.set_ylabel(f"{label}\n(median over seeds; IQR shaded for autotune, random)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].axhline(NEAR, color="grey", linestyle=":", linewidth=1)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"search strategies replayed on {tag}")
    fig.tight_layout()
    fig.savefig(out / f"search_convergence_{tag}.png", dpi=120)
    plt.close(fig)


def plot_fronts(grid: Grid, outcomes: dict[str, Outcome], out: Path, tag: str) -> None:
    """Every point's median with whiskers over its repeats, the feasible front, and what autotune and
    random found in 20 trials (seed 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    ok = [p for p in grid.points if p.latency_p99_ms is not None and p.throughput_rps is not None]
    for p in ok:
        (x0, x1), (y0, y1) = p.spread("latency_p99_ms"), p.spread("throughput_rps")
        ax.errorbar(
            p.latency_p99_ms,
            p.throughput_rps,
            xerr=[[p.latency_p99_ms - x0], [x1 - p.latency_p99_ms]],
            yerr=[[p.throughput_rps - y0], [y1 - p.throughput_rps]],
            fmt="o",
            color="0.7",
            markersize=3,
            elinewidth=0.6,
        )
    for name, style in (("grid", "k-"), ("autotune", "C0o-"), ("random", "C1s--")):
        pts = grid.points if name == "grid" else (outcomes[name].first if name in outcomes else [])
        f = feasible_front(pts, grid.slo_ms, grid.max_error_rate)
        if f:
            label = f"{name} front" + ("" if name == "grid" else ", 20 trials (seed 0)")
            ax.plot([p99 for _, p99, _ in f], [thr for _, _, thr in f], style, label=label)
    ax.axvline(grid.slo_ms, color="red", linestyle=":", linewidth=1, label="SLO")
    ax.set_xscale("log")
    ax.set_xlabel("p99 latency, ms (log): median, whiskers min-max of the repeats")
    ax.set_ylabel("throughput, rps")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / f"pareto_fronts_{tag}.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
