"""Record a grid of real measurements, each point several times, for replaying samplers (search_efficiency.py).

Every measurement is a real trial under autotune's protocol (fresh local server, model warm-up, windows
until stable with enough requests behind the p99) at one fixed load. Points are measured in rounds: each
round visits every point once in its own shuffled order, so a point's repeats are spread over the whole
recording and slow drift of the host becomes noise instead of lining up with one knob. The grid includes
the first configurations autotune's sampler tries on this host (seeds.py), so a replay never has to guess
where they land. Rows are appended as they are measured: an interrupted recording resumes where it stopped.

    python benchmarks/record_grid.py --model tiny --protocol grpc --concurrency 8 --window-s 1 --slo-ms 25 \
        --out benchmarks/data/grid-tiny.csv
    python benchmarks/record_grid.py --model resnet --grid small --concurrency 8 --slo-ms 1000 \
        --out benchmarks/data/grid-resnet.csv
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import itertools
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from _common import machine, stop_if_interrupted
from grid_file import COLUMNS, KNOB_COLUMNS, columns_of, point_key, read_grid, write_header

from autotune.fingerprint import host_info
from autotune.knobs import ServingConfig, schedulable_cpus
from autotune.measure import MeasureSettings, run_trial
from autotune.models.resolve import resolve_model
from autotune.procs import interrupt_on_sigterm
from autotune.seeds import heuristic_seeds
from autotune.servers.backends import resolve_backend
from autotune.space import Host, default_space

# Grids over the default space on a 2-core host. Thread value 0 means "TF picks" (the core count), so
# batching-on points use explicit 1 and 2 only; TF Serving's defaults (batching off, 0/0) are a point.
# max_enqueued_batches stays at TF Serving's default everywhere.
GRIDS: dict[str, dict[str, list]] = {
    "coarse": {
        "max_batch_size": [1, 4, 8, 16, 32],
        "batch_timeout_micros": [1, 5000, 50000],
        "num_batch_threads": [1, 2],
        "threads": [(2, 1), (1, 2)],
        "unbatched_threads": [(0, 0), (1, 1), (2, 1), (1, 2), (2, 2)],
    },
    # For the slow models (ResNet50 serves ~20 images/s on 2 cores, ~25 s a measurement): fewer batch points.
    "small": {
        "max_batch_size": [1, 4, 8, 16],
        "batch_timeout_micros": [1, 50000],
        "num_batch_threads": [1, 2],
        "threads": [(2, 1), (1, 2)],
        "unbatched_threads": [(0, 0), (1, 1), (2, 1), (1, 2), (2, 2)],
    },
}


def _b(mbs: int, timeout: int, nbt: int, intra: int, inter: int, **more: object) -> ServingConfig:
    return ServingConfig(True, mbs, timeout, nbt, intra_op_threads=intra, inter_op_threads=inter, **more)  # type: ignore[arg-type]


# Configs in no grid above (odd batch sizes and timeouts, queue limits, padding, CPU allowances), chosen before
# any model prediction was made, to test the performance model blind (benchmarks/validate_model.py).
HELDOUT = [
    _b(3, 2000, 1, 1, 2),
    _b(6, 20000, 2, 1, 1),
    _b(12, 500, 2, 2, 2),
    _b(24, 100000, 1, 2, 1),
    _b(5, 10000, 2, 1, 2, max_enqueued_batches=2),
    _b(10, 1000, 2, 1, 2, allowed_batch_sizes=(2, 4, 10)),
    _b(7, 300, 2, 1, 2, cpus=1.5),
    _b(32, 50000, 2, 1, 2),
    ServingConfig(intra_op_threads=1, inter_op_threads=1, cpus=1.5),
    ServingConfig(cpus=1.5, num_batch_threads=1),
    ServingConfig(intra_op_threads=0, inter_op_threads=1),
    ServingConfig(intra_op_threads=1, inter_op_threads=1, cpus=1.0, num_batch_threads=1),
]

# A 16-core host (the GPU machine's CPUs), chosen before any profile or measurement there: every knob at values a
# 2-core host cannot have (wide pools, 64-item batches, 4- and 8-core allowances), for the model's blind check.
CPU16 = [
    ServingConfig(),
    ServingConfig(intra_op_threads=1, inter_op_threads=1),
    ServingConfig(intra_op_threads=4, inter_op_threads=4),
    ServingConfig(intra_op_threads=16, inter_op_threads=1),
    ServingConfig(intra_op_threads=1, inter_op_threads=16),
    ServingConfig(cpus=4),
    ServingConfig(intra_op_threads=2, inter_op_threads=4, cpus=8),
    _b(8, 1000, 4, 4, 1),
    _b(32, 20000, 2, 8, 1),
    _b(16, 5000, 16, 1, 1),
    _b(64, 5000, 1, 16, 1),
    _b(4, 500, 8, 2, 2, cpus=8),
]


# MobileNetV2 on pixels with its variants (the model-seeded jobs' space, benchmarks/studies/
# mobilenet_float-variants-relaxed.toml, gRPC at concurrency 4), in no grid, chosen before the profile that predicts
# them (validation-plan.md, "Addendum: each served form's own transport"); four of them ran in the first live run.
def _v(variant: str, **knobs: object) -> ServingConfig:
    return ServingConfig(model_variant=variant, **knobs)  # type: ignore[arg-type]


VARIANTS = [
    ServingConfig(),
    ServingConfig(intra_op_threads=1, inter_op_threads=2),
    _b(4, 2000, 2, 1, 2),
    _v("tflite_fp16"),
    _v("tflite_fp16", intra_op_threads=1, inter_op_threads=1),
    _v("tflite_fp16", intra_op_threads=2, inter_op_threads=2),
    _v("tflite_fp16", cpus=1.5),
    _b(2, 5000, 2, 1, 2, model_variant="tflite_fp16"),
    _b(8, 20000, 1, 2, 1, model_variant="tflite_fp16"),
    _v("tflite_int8", intra_op_threads=1, inter_op_threads=2),
    _v("tflite_int8", cpus=1.0),
    _b(4, 1000, 2, 2, 2, model_variant="tflite_int8"),
]

# MobileNetV2 on pixels, gRPC at concurrency 6, for the inter-op pool's order of service (validation-plan.md,
# "Addendum: calls taken as Eigen's pool takes them"): configs measured nowhere before, one, two, three and four
# inter-op threads, batched and not, chosen before the profile that predicts them.
TAILS = [
    ServingConfig(),
    ServingConfig(intra_op_threads=1, inter_op_threads=3),
    ServingConfig(intra_op_threads=2, inter_op_threads=3),
    ServingConfig(intra_op_threads=0, inter_op_threads=4, cpus=1.5),
    ServingConfig(intra_op_threads=2, inter_op_threads=1, cpus=1.5),
    _b(2, 500, 1, 1, 2),
    _b(3, 1500, 2, 1, 3),
    _b(6, 3000, 1, 2, 1),
    _b(8, 5000, 3, 1, 3),
    _b(5, 1500, 2, 2, 2, cpus=1.5),
    _b(4, 8000, 1, 1, 1, max_enqueued_batches=2),
    _b(12, 30000, 1, 2, 2),
]

# MobileNetV2 on pixels, gRPC at concurrency 10, for the transport's CPU where calls do not spin (validation-plan.md,
# "Addendum: the transport's CPU where calls do not spin"): batching over its timeouts and batch threads, and four
# unbatched configs, all measured nowhere before but TF Serving's defaults, chosen before the profile that predicts
# them; recorded with the server's own mean batch size.
BATCHES = [
    ServingConfig(),
    ServingConfig(intra_op_threads=1, inter_op_threads=4),
    ServingConfig(intra_op_threads=2, inter_op_threads=2, cpus=1.5),
    ServingConfig(intra_op_threads=1, inter_op_threads=2, cpus=1.0),
    _b(2, 1000, 2, 1, 2),
    _b(3, 4000, 1, 1, 1),
    _b(4, 3000, 2, 1, 2),
    _b(5, 6000, 1, 2, 1),
    _b(6, 1000, 3, 1, 3),
    _b(8, 10000, 2, 1, 2),
    _b(10, 2000, 1, 2, 2),
    _b(16, 20000, 2, 1, 2, cpus=1.5),
]

# MobileNetV2 on pixels, gRPC at concurrency 12, for the batch op's own CPU (validation-plan.md, "Addendum: the batch
# op's own CPU"): nine batched configs over sizes 2-12, timeouts 1.5-15 ms and 1-4 batch threads, and three unbatched,
# all measured nowhere before but TF Serving's defaults, chosen before the profile that predicts them.
BATCH_OP = [
    ServingConfig(),
    ServingConfig(intra_op_threads=1, inter_op_threads=3, cpus=1.5),
    ServingConfig(intra_op_threads=2, inter_op_threads=4),
    _b(2, 2000, 1, 1, 1),
    _b(3, 5000, 2, 1, 2),
    _b(4, 1500, 2, 2, 2),
    _b(5, 2500, 3, 1, 3),
    _b(6, 8000, 1, 1, 2),
    _b(7, 3000, 4, 1, 4),
    _b(8, 4000, 2, 1, 2, cpus=1.5),
    _b(10, 6000, 1, 2, 1),
    _b(12, 15000, 2, 1, 2),
]
# The same question over REST at concurrency 6 (validation-plan.md, "Addendum: the batch op's own CPU, again over
# REST"): a replication on another transport and load, configs measured nowhere before but TF Serving's defaults.
BATCH_OP_REST = [
    ServingConfig(),
    ServingConfig(intra_op_threads=1, inter_op_threads=2, cpus=1.5),
    ServingConfig(intra_op_threads=2, inter_op_threads=3, cpus=1.5),
    _b(2, 4000, 2, 1, 2),
    _b(3, 2000, 1, 1, 1),
    _b(3, 6000, 3, 1, 3),
    _b(4, 5000, 2, 1, 2, cpus=1.5),
    _b(5, 1000, 1, 1, 2),
    _b(6, 2500, 2, 2, 2),
    _b(8, 12000, 2, 1, 2),
    _b(9, 3000, 4, 1, 4),
    _b(16, 8000, 1, 1, 1),
]
FIXED = {
    "heldout": HELDOUT,
    "cpu16": CPU16,
    "variants": VARIANTS,
    "tails": TAILS,
    "batches": BATCHES,
    "batch-op": BATCH_OP,
    "batch-op-rest": BATCH_OP_REST,
}


def grid_configs(name: str, cpus: int, concurrency: int) -> list[ServingConfig]:
    """Every config of grid NAME, plus the sampler's seeds for a host of CPUS cores at CONCURRENCY."""
    if name in FIXED:
        return list(FIXED[name])
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
    keys = {point_key(_row(c)) for c in configs}
    for seed in heuristic_seeds(default_space(Host(cpus, 0)), cpus, concurrency):
        if point_key(_row(seed)) not in keys:
            keys.add(point_key(_row(seed)))
            configs.append(seed)
    return configs


def _row(c: ServingConfig) -> dict:
    return {k: getattr(c, k) for k in KNOB_COLUMNS} | {
        "cpus": c.cpus,
        "allowed_batch_sizes": ";".join(map(str, c.allowed_batch_sizes)),
        "model_variant": c.model_variant,
    }


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main() -> None:
    interrupt_on_sigterm()  # a SIGTERM stops what it started, as Ctrl-C does
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--grid", choices=[*sorted(GRIDS), *sorted(FIXED)], default="coarse")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--protocol", default="rest")
    p.add_argument("--slo-ms", type=float, required=True, help="the p99 SLO replays judge feasibility by")
    p.add_argument("--max-error-rate", type=float, default=0.01)
    p.add_argument("--window-s", type=float, default=2.0)
    p.add_argument("--warmup-s", type=float, default=1.0)
    p.add_argument("--max-windows", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3, help="measurements per point, each on a fresh server")
    p.add_argument("--limit", type=int, default=0, help="measure at most this many new rows")
    p.add_argument("--deadline-s", type=float, default=0, help="start no measurement after this many seconds")
    p.add_argument(
        "--max-foreign-cores",
        type=float,
        default=0.2,
        help="a measurement that saw more CPU used outside it is taken again (up to twice), as the daemon does",
    )
    p.add_argument(
        "--monitoring",
        action="store_true",
        help="turn on the server's metrics endpoint and record its mean batch size (server_mean_batch_size)",
    )
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()

    cpus = schedulable_cpus()
    settings = MeasureSettings(
        protocol=a.protocol,
        concurrency=a.concurrency,
        window_s=a.window_s,
        warmup_s=a.warmup_s,
        max_windows=a.max_windows,
        measure_unloaded=False,
        # As a live job of the same study: over the error limit is a failed trial, not a measured one.
        slo_ms=a.slo_ms,
        max_error_rate=a.max_error_rate,
        monitoring=a.monitoring,
    )
    recorded = {
        "model": a.model,
        "grid": a.grid,
        "protocol": a.protocol,
        "concurrency": a.concurrency,
        "slo_ms": a.slo_ms,
        "max_error_rate": a.max_error_rate,
        "cpus": cpus,
        **({"monitoring": True} if a.monitoring else {}),
    }
    info = host_info()
    header = {
        **recorded,
        "window_s": a.window_s,
        "warmup_s": a.warmup_s,
        "max_windows": a.max_windows,
        "min_requests": settings.min_requests,
        "repeats": a.repeats,
        "cpu_model": info["cpu_model"],
        "tensorflow": info["tensorflow"],
        "machine": machine(),
        "autotune_commit": _commit(),
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python benchmarks/record_grid.py " + " ".join(sys.argv[1:]),
    }
    counts: Counter = Counter()
    if a.out.exists():
        old, rows = read_grid(a.out)
        clash = {k: (old.get(k), str(v)) for k, v in recorded.items() if old.get(k) != str(v)}
        if clash:
            raise SystemExit(f"error: {a.out} was recorded with other settings {clash}; use another --out")
        if old.get("cpu_model") != info["cpu_model"]:
            raise SystemExit(f"error: {a.out} was recorded on {old.get('cpu_model')}, this host is {info['cpu_model']}")
        counts.update(point_key(r) for r in rows)
    else:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        write_header(a.out, header)

    model = resolve_model(a.model)
    backend = resolve_backend("local")
    configs = grid_configs(a.grid, cpus, a.concurrency)
    todo: list[tuple[int, ServingConfig]] = []
    for r in range(a.repeats):  # round r: every point still short of r+1 measurements, in a fresh order
        round_ = [c for c in configs if counts[point_key(_row(c))] <= r]
        random.Random(r).shuffle(round_)
        todo += [(r + 1, c) for c in round_]
    if a.limit:
        todo = todo[: a.limit]
    print(
        f"{len(configs)} grid points x {a.repeats}, {sum(counts.values())} recorded, {len(todo)} to measure",
        file=sys.stderr,
    )
    started = time.monotonic()
    with a.out.open("a", newline="") as f:
        # A file resumed keeps its own columns: one started before a column was added never gains it half-way.
        writer = csv.DictWriter(f, fieldnames=columns_of(a.out), extrasaction="ignore")
        for i, (repeat, config) in enumerate(todo, 1):
            if a.deadline_s and time.monotonic() - started > a.deadline_s:
                print(f"deadline: {len(todo) - i + 1} measurements left; rerun to resume", file=sys.stderr)
                break
            for _ in range(3):
                result = run_trial(model, config, settings, backend)
                if (result.metrics.get("foreign_cores") or 0.0) <= a.max_foreign_cores:
                    break
                print(f"foreign load {result.metrics['foreign_cores']} cores: measuring again", file=sys.stderr)
            # Ctrl-C is not a measurement: resume measures it again.
            stop_if_interrupted(result.failure_reason, "interrupted: rerun the same command to resume")
            m = result.metrics
            row = _row(config) | {k: m.get(k) for k in COLUMNS if k in m}
            for name in ("throughput_ci95", "latency_p99_ci95"):
                low, high = m.get(name) or (None, None)
                row[f"{name}_low"], row[f"{name}_high"] = low, high
            row["repeat"] = repeat
            row["measured_at"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            row["failure_reason"] = result.failure_reason or ""
            writer.writerow(row)
            f.flush()
            eta = (time.monotonic() - started) / i * (len(todo) - i)
            print(
                f"[{i}/{len(todo)}] r{repeat} {config.to_dict()} -> {row.get('throughput_rps')} rps, "
                f"p99 {row.get('latency_p99_ms')} ms {row['failure_reason']} (eta {eta / 60:.0f} min)",
                file=sys.stderr,
                flush=True,
            )


if __name__ == "__main__":
    main()
