"""Informed first trials: the configurations TF Serving's batching guide would have an engineer try first.

The `autotune` sampler measures these right after the defaults, then lets TPE search from them. They
follow from the host and the load alone (cores, concurrency), never from earlier measurements:
- batching with one batch thread per core and the batch as large as the concurrent requests, timeout ~0
  (the guide's CPU starting point), one intra-op thread per op and one inter-op thread per core, so the
  batch threads' ops run side by side;
- the same with one batch thread using every core for each op (fewer, larger batches);
- no batching, one intra-op thread per op and one inter-op thread per core (many concurrent requests
  should not oversubscribe cores, nor wait for one another);
- batching with a short timeout (1 ms), so batches fill under lighter load.

One intra-op thread never comes with one inter-op thread on a multi-core host: TF would then run one op at
a time on one core (ResNet50 on 2 cores: the three worst of 39 grid points, half the best throughput;
benchmarks/RESULTS.md).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from autotune.errors import AutotuneError
from autotune.knobs import KNOBS, ServingConfig, validate
from autotune.space import Dimension


def as_tf_reads(name: str, value: Any, cpus: int) -> Any:
    """What TF Serving makes of VALUE for knob NAME: a thread count of 0 is every core (TF picks), a batch
    timeout of 0 is no wait, as 1 µs is. Seeds are fitted to the nearest choice on these readings."""
    if name in ("intra_op_threads", "inter_op_threads") and value == 0:
        return cpus
    if name == "batch_timeout_micros" and value == 0:
        return 1
    return value


def _fit(dim: Dimension | None, value: Any, cpus: int = 1) -> Any:
    """VALUE moved into DIM: the fixed value, the nearest choice (as TF reads both), or clamped to the range."""
    if dim is None:
        return value
    if dim.is_fixed:
        return dim.fixed
    if dim.choices is not None:
        if value in dim.choices:
            return value
        numeric = [c for c in dim.choices if isinstance(c, int | float) and not isinstance(c, bool)]
        if numeric and isinstance(value, int | float) and not isinstance(value, bool):
            want = as_tf_reads(dim.name, value, cpus) or 1e-9

            def distance(c: float) -> float:
                return abs(math.log((as_tf_reads(dim.name, c, cpus) or 1e-9) / want))

            return min(numeric, key=distance)
        return dim.choices[0]
    low = dim.low if dim.low is not None else value
    high = dim.high if dim.high is not None else value
    clamped = min(max(value, low), high)
    return type(value)(clamped) if isinstance(value, int) else clamped


def heuristic_seeds(space: dict[str, Dimension], cpus: int, concurrency: int | None) -> list[ServingConfig]:
    """The guide's starting configurations for a host with CPUS cores under CONCURRENCY requests, fit to SPACE."""
    cpus = max(1, cpus)
    batch = 2 ** max(0, math.ceil(math.log2(max(1, concurrency or 8))))
    raw = [
        dict(
            enable_batching=True,
            max_batch_size=batch,
            batch_timeout_micros=1,
            num_batch_threads=cpus,
            intra_op_threads=1,
            inter_op_threads=cpus,
        ),
        dict(
            enable_batching=True,
            max_batch_size=batch,
            batch_timeout_micros=1,
            num_batch_threads=1,
            intra_op_threads=cpus,
            inter_op_threads=1,
        ),
        dict(enable_batching=False, intra_op_threads=1, inter_op_threads=cpus),
        dict(
            enable_batching=True,
            max_batch_size=batch,
            batch_timeout_micros=1000,
            num_batch_threads=cpus,
            intra_op_threads=1,
            inter_op_threads=cpus,
        ),
    ]
    seeds: list[ServingConfig] = []
    for values in raw:
        fitted = {name: _fit(space.get(name), value, cpus) for name, value in values.items()}
        for name, dim in space.items():  # knobs the seed leaves alone still honour a fixed value
            if name not in fitted and dim.is_fixed:
                fitted[name] = dim.fixed
        if not fitted.get("enable_batching", False):
            fitted = {k: v for k, v in fitted.items() if not KNOBS[k].batching}
        try:
            config = validate(dataclasses.replace(ServingConfig(), **fitted))
        except AutotuneError:  # a narrowed space can make a seed invalid: skip it, the sampler covers the rest
            continue
        if config not in seeds and config != ServingConfig():
            seeds.append(config)
    return seeds


def allowance_seeds(space: dict[str, Dimension]) -> list[ServingConfig]:
    """TF Serving's defaults at each whole-core allowance a searched `cpus` offers, fewest cores first: where
    cost is the objective, the plainest cheaper configs are the first worth knowing."""
    dim = space.get("cpus")
    if dim is None or dim.choices is None:
        return []
    whole = sorted(c for c in dim.choices if c and float(c).is_integer())
    return [ServingConfig(cpus=float(c)) for c in whole]
