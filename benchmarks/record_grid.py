"""Record a grid of real measurements once, for replaying samplers against it (search_efficiency.py).

Every grid point is a real trial (fresh local server, real load over sockets) at the study's fixed load.
Rows are appended to a CSV as they are measured, so an interrupted recording resumes where it stopped.
Points are measured in a shuffled order, so slow drift of the host does not line up with one knob.

    python benchmarks/record_grid.py --model tiny --concurrency 4 --out benchmarks/data/grid-tiny.csv
    python benchmarks/record_grid.py --model resnet --grid coarse --concurrency 8 --window-s 3 \
        --out benchmarks/data/grid-resnet.csv
"""

from __future__ import annotations

import argparse
import csv
import itertools
import random
import sys
import time
from pathlib import Path

from autotune.knobs import ServingConfig
from autotune.models.resolve import resolve_model
from autotune.servers.backends import resolve_backend
from autotune.trial import MeasureSettings, run_trial

KNOB_COLUMNS = [
    "enable_batching",
    "max_batch_size",
    "batch_timeout_micros",
    "num_batch_threads",
    "intra_op_threads",
    "inter_op_threads",
]
METRIC_COLUMNS = [
    "throughput_rps",
    "latency_p50_ms",
    "latency_p99_ms",
    "error_rate",
    "cpu_cores",
    "stable",
    "failure_reason",
    "setup_s",
    "measure_s",
    "teardown_s",
]

# Grids over the default space on a 2-core host. Thread value 0 means "TF picks" (the core count), so
# batching-on points use explicit 1 and 2 only; the TF Serving defaults (batching off, 0/0) are a point.
GRIDS: dict[str, dict[str, list]] = {
    "fine": {
        "max_batch_size": [1, 2, 4, 8, 16, 32],
        "batch_timeout_micros": [1, 500, 5000, 50000],
        "num_batch_threads": [1, 2],
        "threads": [(1, 1), (2, 1), (1, 2), (2, 2)],
        "unbatched_threads": [(a, b) for a in (0, 1, 2) for b in (0, 1, 2)],
    },
    "coarse": {
        "max_batch_size": [1, 4, 8, 16, 32],
        "batch_timeout_micros": [1, 5000, 50000],
        "num_batch_threads": [1, 2],
        "threads": [(2, 1), (1, 2)],
        "unbatched_threads": [(0, 0), (1, 1), (2, 1), (1, 2), (2, 2)],
    },
}


def grid_configs(name: str) -> list[ServingConfig]:
    """Every config of grid NAME (max_enqueued_batches stays at TF Serving's 100)."""
    g = GRIDS[name]
    configs = [ServingConfig(intra_op_threads=a, inter_op_threads=b) for a, b in g["unbatched_threads"]]
    for mbs, timeout, nbt, (intra, inter) in itertools.product(
        g["max_batch_size"], g["batch_timeout_micros"], g["num_batch_threads"], g["threads"]
    ):
        configs.append(
            ServingConfig(
                enable_batching=True,
                max_batch_size=mbs,
                batch_timeout_micros=timeout,
                num_batch_threads=nbt,
                intra_op_threads=intra,
                inter_op_threads=inter,
            )
        )
    return configs


def key(row: dict) -> tuple:
    """A grid point's identity, from a config's fields or a CSV row."""
    on = str(row["enable_batching"]) in ("True", "true", "1")
    batch = tuple(int(row[k]) for k in KNOB_COLUMNS[1:4]) if on else ()
    return (on, *batch, int(row["intra_op_threads"]), int(row["inter_op_threads"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--grid", choices=sorted(GRIDS), default="fine")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--protocol", default="rest")
    p.add_argument("--window-s", type=float, default=1.0)
    p.add_argument("--warmup-s", type=float, default=0.5)
    p.add_argument("--max-windows", type=int, default=6)
    p.add_argument("--limit", type=int, default=0, help="measure at most this many new points")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()

    model = resolve_model(a.model)
    backend = resolve_backend("local")
    settings = MeasureSettings(
        protocol=a.protocol,
        concurrency=a.concurrency,
        window_s=a.window_s,
        warmup_s=a.warmup_s,
        max_windows=a.max_windows,
        measure_unloaded=False,
    )
    configs = grid_configs(a.grid)
    random.Random(0).shuffle(configs)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    done: set[tuple] = set()
    if a.out.exists():
        with a.out.open() as f:
            done = {key(r) for r in csv.DictReader(f)}
    todo = [c for c in configs if key(c.to_dict() | {"enable_batching": c.enable_batching}) not in done]
    if a.limit:
        todo = todo[: a.limit]
    print(f"{len(configs)} grid points, {len(done)} recorded, {len(todo)} to measure", file=sys.stderr)
    new_file = not a.out.exists()
    with a.out.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=KNOB_COLUMNS + METRIC_COLUMNS)
        if new_file:
            writer.writeheader()
        started = time.monotonic()
        for i, config in enumerate(todo, 1):
            result = run_trial(model, config, settings, backend)
            row = {k: getattr(config, k) for k in KNOB_COLUMNS}
            row.update({k: result.metrics.get(k) for k in METRIC_COLUMNS})
            row["failure_reason"] = result.failure_reason or ""
            writer.writerow(row)
            f.flush()
            eta = (time.monotonic() - started) / i * (len(todo) - i)
            print(
                f"[{i}/{len(todo)}] {config.to_dict()} -> {row['throughput_rps']} rps, p99 {row['latency_p99_ms']} ms"
                f" {row['failure_reason']} (eta {eta / 60:.0f} min)",
                file=sys.stderr,
                flush=True,
            )


if __name__ == "__main__":
    main()
