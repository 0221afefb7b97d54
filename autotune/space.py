"""The search space: which knobs, over which ranges, on this host.

Ranges adapt to the host (cores, GPU present); a study narrows or fixes knobs.
Batching knobs are conditional: they are only suggested when enable_batching is.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any

from autotune.cores import schedulable_cores
from autotune.errors import AutotuneError
from autotune.knobs import KNOBS, ServingConfig, validate
from autotune.spec import KnobSpec


@dataclass(frozen=True)
class Host:
    """What the space adapts to."""

    cpus: int
    gpus: int
    # Why a fractional CPU allowance cannot be enforced here (None: it can).
    cpu_quota_problem: str | None = None
    # Why bfloat16 mixed precision is not worth searching here (None: the CPU computes bf16 natively).
    bf16_problem: str | None = None

    @staticmethod
    def detect() -> Host:
        from autotune import gpu
        from autotune.cpufeatures import bf16_problem
        from autotune.cpulimit import quota_problem

        return Host(len(schedulable_cores()) or 1, gpu.device_count(), quota_problem(), bf16_problem())


# Objectives that make CPU allocation worth searching: with them the space gains the `cpus` knob.
RESOURCE_OBJECTIVES = ("cost_per_1k_requests", "cpu_cores")


def cpus_choices(host: Host) -> tuple[float, ...]:
    """Allowances worth trying on HOST: half cores from 0.5 where a quota can be set, else whole cores;
    the last is 0, every core (TF Serving's defaults run so, and are always measured)."""
    if host.cpu_quota_problem is None:
        return (*(i / 2 for i in range(1, 2 * host.cpus)), 0.0)
    return (*(float(i) for i in range(1, host.cpus)), 0.0)


@dataclass(frozen=True)
class Dimension:
    """One searched or fixed knob."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None
    fixed: Any = None

    @property
    def is_fixed(self) -> bool:
        return self.fixed is not None


def default_space(host: Host) -> dict[str, Dimension]:
    """DESIGN's default ranges for HOST."""
    space = {
        "enable_batching": Dimension("enable_batching", choices=(False, True)),
        "max_batch_size": Dimension("max_batch_size", 1, 128, log=True),
        # Log scale cannot hold 0; 1 µs and 0 are the same to the batch scheduler.
        "batch_timeout_micros": Dimension("batch_timeout_micros", 1, 100_000, log=True),
        "num_batch_threads": Dimension("num_batch_threads", 1, host.cpus),
        "max_enqueued_batches": Dimension("max_enqueued_batches", 1, 1000, log=True),
        "intra_op_threads": Dimension("intra_op_threads", 0, host.cpus),
        "inter_op_threads": Dimension("inter_op_threads", 0, host.cpus),
    }
    if host.gpus:
        space["gpu_memory_fraction"] = Dimension("gpu_memory_fraction", 0.1, 1.0)
    return space


def build_space(narrowing: dict[str, KnobSpec], host: Host, objectives: tuple[str, ...] = ()) -> dict[str, Dimension]:
    """The default space for HOST, narrowed or fixed by a study's [space] tables.

    CPU allocation (`cpus`) is searched when a study minimizes a resource (RESOURCE_OBJECTIVES) or names it.
    """
    space = default_space(host)
    if any(o in RESOURCE_OBJECTIVES for o in objectives):
        space["cpus"] = Dimension("cpus", choices=cpus_choices(host))
    for name, spec in narrowing.items():
        if name == "gpu_memory_fraction" and not host.gpus:
            raise AutotuneError("space.gpu_memory_fraction: this host has no GPU (NVML sees none)")
        if name == "cpus":
            _check_cpus_spec(spec, host)
        if name == "mixed_precision" and host.bf16_problem and "bfloat16" in (spec.value, *(spec.choices or ())):
            raise AutotuneError(f"space.mixed_precision: {host.bf16_problem}")
        if spec.value is not None:
            space[name] = Dimension(name, fixed=spec.value)
        elif spec.choices is not None:
            space[name] = Dimension(name, choices=spec.choices)
        else:
            low = spec.low if spec.low is not None else 0
            log = bool(spec.log) and low > 0
            space[name] = Dimension(name, spec.low, spec.high, log=log)
    return space


def _check_cpus_spec(spec: KnobSpec, host: Host) -> None:
    """A study's `cpus` must be values this host can give and enforce (one-line errors)."""
    from autotune.cpulimit import check_enforceable, quota_error

    values = [v for v in (spec.value, spec.low, spec.high, *(spec.choices or ())) if v is not None]
    try:
        for v in values:
            check_enforceable(float(v), host.cpus, host.cpu_quota_problem)
        if spec.low is not None and host.cpu_quota_problem is not None:  # a range suggests fractions
            raise quota_error(host.cpu_quota_problem)
    except AutotuneError as exc:
        raise AutotuneError(f"space.{exc}") from None


# A grid sweep visits the product of every knob's values: a handful per knob keeps it countable.
GRID_STEPS = 5


def _ladder(dim: Dimension) -> tuple[Any, ...]:
    """At most GRID_STEPS values spanning DIM: powers-of-two steps on log ranges, even steps otherwise."""
    low, high = float(dim.low), float(dim.high)  # type: ignore[arg-type]
    integer = KNOBS[dim.name].kind is int
    if dim.log:
        ratio = 2.0
        while math.floor(math.log(high / low, ratio)) + 2 > GRID_STEPS:
            ratio *= 2
        values = [low * ratio**i for i in range(math.floor(math.log(high / low, ratio)) + 1)] + [high]
    else:
        values = [low + (high - low) * i / (GRID_STEPS - 1) for i in range(GRID_STEPS)]
    rounded = [round(v) if integer else round(v, 3) for v in values]
    return tuple(sorted(set(rounded)))


def grid_of(space: dict[str, Dimension]) -> dict[str, Dimension]:
    """SPACE with every range replaced by a ladder of choices, for an exhaustive sweep (the `grid` sampler)."""
    return {
        name: dim if dim.is_fixed or dim.choices is not None else Dimension(name, choices=_ladder(dim))
        for name, dim in space.items()
    }


def _grid_values(dim: Dimension) -> tuple[Any, ...]:
    """The values a sweep visits on a discretized DIM."""
    return (dim.fixed,) if dim.is_fixed else tuple(dim.choices or ())


def _grid_knobs(space: dict[str, Dimension], batching_on: bool) -> list[str]:
    """The knobs a config varies besides enable_batching: batching knobs only with batching on."""
    return [n for n in space if n != "enable_batching" and (batching_on or not KNOBS[n].batching)]


def grid_size(space: dict[str, Dimension]) -> int:
    """How many configs a sweep of a discretized SPACE visits (batching knobs only count with batching on)."""
    return sum(
        math.prod(len(_grid_values(space[n])) for n in _grid_knobs(space, on))
        for on in _grid_values(space["enable_batching"])
    )


def grid_configs(space: dict[str, Dimension]) -> list[ServingConfig]:
    """Every config of a discretized SPACE (grid_of), batching knobs only with batching on: grid_size of them."""
    out = []
    for on in _grid_values(space["enable_batching"]):
        names = _grid_knobs(space, on)
        for combo in itertools.product(*(_grid_values(space[n]) for n in names)):
            knobs = dict(zip(names, combo, strict=True))
            if isinstance(knobs.get("allowed_batch_sizes"), list):
                knobs["allowed_batch_sizes"] = tuple(knobs["allowed_batch_sizes"])
            out.append(validate(dataclasses.replace(ServingConfig(), enable_batching=on, **knobs)))
    return out


def suggest(trial: Any, space: dict[str, Dimension]) -> ServingConfig:
    """Ask an Optuna trial for one configuration (batching knobs only when batching is on)."""
    values: dict[str, Any] = {}

    def pick(dim: Dimension) -> Any:
        if dim.is_fixed:
            return dim.fixed
        if dim.choices is not None:
            return trial.suggest_categorical(dim.name, list(dim.choices))
        if KNOBS[dim.name].kind is int:
            return trial.suggest_int(dim.name, int(dim.low), int(dim.high), log=dim.log)
        return trial.suggest_float(dim.name, float(dim.low), float(dim.high), log=dim.log)

    enable = pick(space["enable_batching"])
    values["enable_batching"] = enable
    for name, dim in space.items():
        if name == "enable_batching" or (KNOBS[name].batching and not enable):
            continue
        values[name] = pick(dim)
    if isinstance(values.get("allowed_batch_sizes"), list):
        values["allowed_batch_sizes"] = tuple(values["allowed_batch_sizes"])
    return validate(dataclasses.replace(ServingConfig(), **values))


def params_of(config: ServingConfig, space: dict[str, Dimension]) -> dict[str, Any]:
    """Optuna params that make `suggest` return CONFIG (for enqueue_trial: defaults, warm starts)."""
    params: dict[str, Any] = {}
    for name, dim in space.items():
        if dim.is_fixed or (KNOBS[name].batching and not config.enable_batching):
            continue
        params[name] = getattr(config, name)
    return params
