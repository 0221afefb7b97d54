"""A job's plan from the performance model: the space simulated at the study's load, the predicted front, and the
few configs a job would measure first. Seconds, and no server: what `autotune plan` prints.

Predictions are not measurements (docs/performance-model.md gives how far the model holds): a plan says where
to look, and only live trials say what is true.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from autotune.errors import AutotuneError
from autotune.knobs import ServingConfig
from autotune.model_check import STORED
from autotune.pareto import dominance_counts, pareto_front
from autotune.perfmodel.profile import Profile
from autotune.perfmodel.simulate import Load, equivalence_key, simulate
from autotune.space import Dimension, grid_configs, grid_of
from autotune.spec import Study
from autotune.tuner import study_is_feasible

# What the model predicts; an objective outside these cannot be planned (RSS, GPU memory, cost, load time).
PREDICTED = ("throughput_rps", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "cpu_cores", "error_rate")
MAX_CONFIGS = 200  # configs simulated at REQUESTS: the best of the screen, where the front and seeds come from
REQUESTS = 500  # simulated answers per config: the ranking, not the third digit
# The screen: every config of a larger grid, at a fifth of the answers. A sample of the grid would miss an optimum
# that is one config of thousands (the search-at-scale race's 16- and 64-core spaces); a rough answer for each does not.
SCREEN_REQUESTS = 100
MAX_SCREEN = 20_000  # grids larger still are sampled: tens of thousands of configs
SEEDS = 4
# Predictions closer than this in every objective are one prediction: the model cannot rank them (its held-out
# throughput error is 5-12%), so a second such seed spends a live trial learning nothing the first did not.
DISTINCT = 0.05


@dataclass(frozen=True)
class Planned:
    """One simulated config: its prediction, in bench's metric names, and whether it meets the study."""

    config: ServingConfig
    metrics: dict[str, Any]
    feasible: bool

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "predicted": self.metrics, "feasible": self.feasible}


@dataclass(frozen=True)
class Plan:
    """The predicted front over the study's objectives, and the configs a job would measure first."""

    load: dict[str, float]
    cores: float
    grid: int  # configs in the discretized space
    simulated: int  # at REQUESTS answers each
    feasible: int
    front: list[Planned]
    seeds: list[Planned]
    seconds: float
    left_out: dict[str, str] = field(default_factory=dict)  # model variant -> why the plan has none of its configs
    screened: int = 0  # configs screened at fewer answers before the best were simulated (0: no screen)
    sampled: bool = False  # the grid was larger than MAX_SCREEN: a sample of it was planned

    @property
    def coverage(self) -> str:
        """How much of the grid the plan saw, in words: what `autotune plan` and a job say."""
        text = f"{self.screened} configs screened" if self.screened else f"{self.simulated} configs simulated"
        if self.sampled:
            text += f" (a sample of {self.grid})"
        elif self.left_out:
            text += f" (of {self.grid}; {', '.join(self.left_out)} left out)"
        return text + (f", the best {self.simulated} simulated" if self.screened else "")

    @property
    def seeds_behind_front(self) -> list[Planned]:
        """The seeds not on the predicted front: taken from behind it where the model predicts the front alike."""
        return [p for p in self.seeds if all(p is not f for f in self.front)]

    def to_json(self) -> dict[str, Any]:
        return {
            "predicted": True,
            "load": self.load,
            "cores": self.cores,
            "grid": self.grid,
            "simulated": self.simulated,
            "feasible": self.feasible,
            "front": [p.to_json() for p in self.front],
            "seeds": [p.to_json() for p in self.seeds],
            "screened": self.screened,
            "seconds": round(self.seconds, 2),
            "left_out": self.left_out,
        }


def plan_load(study: Study, cores: float) -> Load:
    """The study's load; a study that ramps is planned at 2 clients per core (the ramp's end is not known)."""
    if study.rate is not None:
        return Load(rate=study.rate)
    return Load(concurrency=study.concurrency or max(2, round(2 * cores)))


def check_objectives(study: Study) -> None:
    """A one-line error for an objective the model does not predict."""
    missing = [o for o in study.objectives if o not in PREDICTED]
    if missing:
        raise AutotuneError(f"the performance model does not predict {', '.join(missing)}: no plan for this study")


def spread_over_front(front: list[Planned], objectives: dict[str, str], k: int) -> list[Planned]:
    """Up to K points of FRONT: each objective's best first, then evenly along the first objective."""
    if len(front) <= k:
        return list(front)
    chosen: list[int] = []

    def add(i: int) -> None:
        if i not in chosen and len(chosen) < k:
            chosen.append(i)

    for metric, direction in objectives.items():
        values = [p.metrics[metric] for p in front]
        add(values.index(max(values) if direction == "maximize" else min(values)))
    first = next(iter(objectives))
    for i in evenly(sorted(range(len(front)), key=lambda i: front[i].metrics[first]), k):
        add(i)
    return [front[i] for i in chosen]


def distinct_seeds(pool: list[Planned], objectives: dict[str, str], k: int) -> list[Planned]:
    """Up to K of POOL the model predicts apart: the front spread first, then the next front (the best of what
    remains) and so on, skipping a config predicted within DISTINCT of a chosen one in every objective."""
    chosen: list[Planned] = []
    remaining = list(pool)
    directions = list(objectives.values())
    while remaining and len(chosen) < k:
        layer_idx = pareto_front([[p.metrics[m] for m in objectives] for p in remaining], directions)
        layer = sorted((remaining[i] for i in layer_idx), key=lambda p: -p.metrics.get("throughput_rps", 0.0))
        ordered = spread_over_front(layer, objectives, k)
        for p in ordered + [p for p in layer if p not in ordered]:
            if len(chosen) < k and not any(alike(p, c, objectives) for c in chosen):
                chosen.append(p)
        taken = set(layer_idx)
        remaining = [p for i, p in enumerate(remaining) if i not in taken]
    return chosen


def alike(a: Planned, b: Planned, objectives: dict[str, str]) -> bool:
    """Whether A and B are predicted within DISTINCT of each other in every objective."""
    return all(abs(a.metrics[m] - b.metrics[m]) <= DISTINCT * max(abs(b.metrics[m]), 1e-9) for m in objectives)


def evenly(items: list[Any], k: int) -> list[Any]:
    """K of ITEMS evenly along them, both ends included (all of them when there are no more than K)."""
    if len(items) <= k:
        return list(items)
    return [items[round(j * (len(items) - 1) / max(k - 1, 1))] for j in range(k)]


Predict = Callable[[ServingConfig, int], dict[str, Any]]  # a config's predicted metrics from N simulated answers


def make_plan(
    profile: Profile,
    study: Study,
    space: dict[str, Dimension],
    protocol: str,
    cores: float | None = None,
    max_configs: int = MAX_CONFIGS,
    requests: int = REQUESTS,
    seeds: int = SEEDS,
    rng_seed: int = 0,
    predict: Predict | None = None,
    max_screen: int = MAX_SCREEN,
) -> Plan:
    """Simulate SPACE at the study's load: every grid config (a sample of MAX_SCREEN on larger grids), screened
    at fewer answers when there are more than MAX_CONFIGS, whose best are simulated at REQUESTS; TF Serving's
    defaults always. PREDICT, when given, answers for the model instead (a benchmark's model with its own error)."""
    check_objectives(study)
    started = time.monotonic()
    host = float(cores or profile.cpus)
    load = plan_load(study, host)
    configs = grid_configs(grid_of(space))
    grid = len(configs)
    # A PREDICT of the caller's answers for every variant it was given; the profile, only for those it measured.
    left_out = {} if predict else unplannable_variants(profile, study, {c.model_variant for c in configs})
    configs = [c for c in configs if c.model_variant not in left_out]
    sampled = len(configs) > max_screen
    if sampled:
        configs = random.Random(rng_seed).sample(configs, max_screen)
    # Of configs the model predicts alike, the first stands for all: the one with the fewest knobs off TF Serving's
    # defaults, the smallest change to deploy and the least resting on how the model reads an edge knob.
    defaults = ServingConfig()  # once: its batch threads read the host's schedulable cores
    configs.sort(key=lambda c: changes_from_defaults(c, defaults))
    predict = predict or simulated(profile, load, protocol, host, rng_seed)
    screened = 0
    if len(configs) > max_configs:
        screened = len(configs)
        configs = best_screened(screen(configs, predict, screen_requests(load), study), study, max_configs)
    if defaults not in configs:
        configs.append(defaults)  # the defaults are always measured, so always planned
    planned = [judged(config, predict(config, requests), study) for config in configs]
    pool = [p for p in planned if p.feasible]
    directions = list(study.objectives.values())
    front_idx = pareto_front([[p.metrics[m] for m in study.objectives] for p in pool], directions) if pool else []
    front = sorted((pool[i] for i in front_idx), key=lambda p: -p.metrics.get("throughput_rps", 0.0))
    return Plan(
        {"concurrency": load.concurrency} if load.concurrency is not None else {"rate": load.rate},  # type: ignore[dict-item]
        host,
        grid,
        len(planned),
        len(pool),
        front,
        distinct_seeds(pool, study.objectives, seeds),
        time.monotonic() - started,
        left_out,
        screened,
        sampled,
    )


def changes_from_defaults(config: ServingConfig, defaults: ServingConfig | None = None) -> tuple[int, float]:
    """How far CONFIG is from TF Serving's DEFAULTS: how many knobs differ, then how far the numbers move (log
    scale, so a queue of 1 is farther from the default 10 than one of 64)."""
    defaults = defaults or ServingConfig()
    changed, moved = 0, 0.0
    for f in fields(ServingConfig):
        value, default = getattr(config, f.name), getattr(defaults, f.name)
        if value != default:
            changed += 1
            numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (value, default))
            moved += abs(math.log((value + 1) / (default + 1))) if numeric and value >= 0 and default >= 0 else 1.0
    return changed, moved


def simulated(profile: Profile, load: Load, protocol: str, host: float, seed: int) -> Predict:
    """The profile's predictions at LOAD on HOST cores, each config the simulation cannot tell apart simulated once."""
    known: dict[tuple[Any, ...], dict[str, Any]] = {}

    def predict(config: ServingConfig, requests: int) -> dict[str, Any]:
        key = (equivalence_key(config, load, host), requests)
        if key not in known:
            known[key] = predicted_metrics(profile, config, load, protocol, host, requests, seed)
        return dict(known[key])

    return predict


def judged(config: ServingConfig, metrics: dict[str, Any], study: Study) -> Planned:
    """CONFIG's prediction, and whether it meets the study (with the margin a measurement gets)."""
    return Planned(config, metrics, study_is_feasible(metrics, study, 0.95))


def screen_requests(load: Load) -> int:
    """The screen's answers per config: SCREEN_REQUESTS, and at least 4 rounds of a closed loop's clients."""
    return max(SCREEN_REQUESTS, 4 * (load.concurrency or 0))


def screen(configs: list[ServingConfig], predict: Predict, requests: int, study: Study) -> list[Planned]:
    """Every one of CONFIGS predicted roughly, from REQUESTS answers."""
    return [judged(config, predict(config, requests), study) for config in configs]


def best_screened(screened: list[Planned], study: Study, k: int) -> list[ServingConfig]:
    """The K best of a screen: its feasible configs by how few others dominate them, then the infeasible ones the
    same way (a rough answer near the SLO may fall on either side of it); more throughput breaks ties. Of configs
    with one prediction (the simulation read them alike) the first stands for all: K predictions, not K copies."""
    objectives, directions = list(study.objectives), list(study.objectives.values())
    chosen: list[ServingConfig] = []
    seen: set[tuple[float, ...]] = set()
    for group in ([p for p in screened if p.feasible], [p for p in screened if not p.feasible]):
        values = [tuple(p.metrics[m] for m in objectives) for p in group]
        counts = dominance_counts(values, directions)
        for i in sorted(range(len(group)), key=lambda i: (counts[i], -group[i].metrics.get("throughput_rps", 0.0))):
            if len(chosen) < k and values[i] not in seen:
                seen.add(values[i])
                chosen.append(group[i].config)
    return chosen


def guarded_space(
    profile: Profile, study: Study, space: dict[str, Dimension], requests_file: str | None
) -> tuple[dict[str, Dimension], dict[str, str]]:
    """SPACE less the model variants whose profiled answers fail the study's accuracy guard, and why each went.

    The profile checks a variant on the inputs a trial checks it on when there is no REQUESTS_FILE, so a trial
    of it would be measured only to be rejected. With a requests file the trial's inputs differ: all stay."""
    dim = space.get("model_variant")
    if dim is None or not dim.choices or requests_file:
        return space, {}
    problems = {v: profile.guard_problem(v, study.min_top1_agreement, study.max_abs_error) for v in dim.choices}
    failing = {v: why for v, why in problems.items() if why is not None}
    kept = tuple(v for v in dim.choices if v not in failing)
    if not failing or not kept:
        return space, {}
    narrowed = replace(dim, choices=None, fixed=kept[0]) if len(kept) == 1 else replace(dim, choices=kept)
    return {**space, "model_variant": narrowed}, failing


def unplannable_variants(profile: Profile, study: Study, variants: set[str]) -> dict[str, str]:
    """Those of VARIANTS the model cannot plan, and why: not profiled, not built, or failing the study's accuracy
    guard on the profile's inputs (a trial would measure them only to reject them)."""
    out = {}
    for variant in sorted(variants):
        problem = profile.variant_problem(variant, study.min_top1_agreement, study.max_abs_error)
        if problem is not None:
            out[variant] = problem
    return out


def predicted_metrics(
    profile: Profile,
    config: ServingConfig,
    load: Load,
    protocol: str,
    cores: float | None = None,
    requests: int = REQUESTS,
    seed: int = 0,
    **curves: Any,
) -> dict[str, Any]:
    """CONFIG simulated at LOAD, as a measurement's metrics (the model assumes a stable server); CURVES (curve,
    transport) replace the profile's as in simulate()."""
    pred = simulate(profile, config, load, protocol, cores, requests=requests, seed=seed, **curves)
    doc = pred.to_json()
    metrics = {k: doc[k] for k in PREDICTED} | {"stable": True, "requests": pred.requests}
    if load.rate is not None:  # open loop: falling short of the offered rate is overload, as when measured
        metrics |= {"offered_rps": load.rate, "achieved_rps": metrics["throughput_rps"]}
    return metrics


@dataclass(frozen=True)
class Predictor:
    """What the model predicts for one config at a study's load: a model-seeded job stores it beside each trial."""

    profile: Profile
    load: Load
    protocol: str

    @classmethod
    def of(cls, profile: Profile, study: Study, protocol: str) -> Predictor:
        return cls(profile, plan_load(study, float(profile.cpus)), protocol)

    def __call__(self, config: ServingConfig) -> dict[str, float]:
        metrics = predicted_metrics(self.profile, config, self.load, self.protocol)
        return {k: float(metrics[k]) for k in STORED}
