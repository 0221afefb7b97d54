"""The grid CSV format shared by record_grid.py (writes it) and search_efficiency.py (replays it).

A grid file starts with `# key: value` lines that say how it was recorded (model, protocol, load, SLO,
host), then one CSV row per measurement: a grid point's knobs, which repeat it was, and what it measured.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from autotune.knobs import SAVEDMODEL

KNOB_COLUMNS = [
    "enable_batching",
    "max_batch_size",
    "batch_timeout_micros",
    "num_batch_threads",
    "max_enqueued_batches",
    "intra_op_threads",
    "inter_op_threads",
]
METRIC_COLUMNS = [
    "throughput_rps",
    "throughput_ci95_low",
    "throughput_ci95_high",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_p99_ci95_low",
    "latency_p99_ci95_high",
    "requests",
    "censored",
    "windows_used",
    "error_rate",
    "cpu_cores",
    "stable",
    "remeasured",
    "foreign_cores",
    "client_cpu_share",
    "model_warmup_s",
    "failure_reason",
    "setup_s",
    "measure_s",
    "teardown_s",
]
# Knobs the first grids held fixed (every core, any batch size): later files add them as the last columns.
EXTRA_KNOB_COLUMNS = ["cpus", "allowed_batch_sizes", "model_variant"]
# What later files add after those: the server's own mean batch size (record_grid.py --monitoring; empty without).
EXTRA_METRIC_COLUMNS = ["server_mean_batch_size"]
COLUMNS = [*KNOB_COLUMNS, "repeat", "measured_at", *METRIC_COLUMNS, *EXTRA_KNOB_COLUMNS, *EXTRA_METRIC_COLUMNS]


def read_grid(path: Path) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The `# key: value` header and the measurement rows of grid file PATH."""
    header: dict[str, str] = {}
    body: list[str] = []
    with path.open() as f:
        for line in f:
            if line.startswith("#"):
                key, _, value = line[1:].partition(":")
                header[key.strip()] = value.strip()
            elif line.strip():
                body.append(line)
    return header, list(csv.DictReader(body))


def columns_of(path: Path) -> list[str]:
    """The CSV column row of grid file PATH (an older file has fewer columns than COLUMNS)."""
    with path.open() as f:
        line = next((line for line in f if not line.startswith("#") and line.strip()), "")
    return next(csv.reader([line]), []) or COLUMNS


def write_header(path: Path, header: dict[str, Any]) -> None:
    """Start grid file PATH with HEADER's `# key: value` lines and the CSV column row."""
    with path.open("w", newline="") as f:
        for key, value in header.items():
            f.write(f"# {key}: {value}\n")
        csv.DictWriter(f, fieldnames=COLUMNS).writeheader()


def point_key(row: dict[str, Any]) -> tuple:
    """A grid point's identity, from a config's fields or a CSV row (batching knobs only when batching)."""
    on = str(row["enable_batching"]) in ("True", "true", "1")
    batch = tuple(int(row[k]) for k in KNOB_COLUMNS[1:5]) if on else ()
    extra = (float(row.get("cpus") or 0.0), allowed_sizes(row) if on else ())
    variant = served_variant(row)
    served = () if variant == SAVEDMODEL else (variant,)  # rows from before variants key as they did
    return (on, *batch, int(row["intra_op_threads"]), int(row["inter_op_threads"]), *extra, *served)


def served_variant(row: dict[str, Any]) -> str:
    """The model variant a row served (files from before variants: the SavedModel)."""
    return row.get("model_variant") or SAVEDMODEL


def config_of(row: dict[str, Any]) -> Any:
    """The ServingConfig a CSV row measured (batching knobs only when batching was on)."""
    from autotune.knobs import ServingConfig

    threads = {"intra_op_threads": int(row["intra_op_threads"]), "inter_op_threads": int(row["inter_op_threads"])}
    cpus = float(row.get("cpus") or 0.0)
    variant = served_variant(row)
    if not point_key(row)[0]:
        return ServingConfig(**threads, cpus=cpus, model_variant=variant)
    batch = {k: int(row[k]) for k in ("max_batch_size", "batch_timeout_micros", "num_batch_threads")}
    return ServingConfig(
        enable_batching=True,
        max_enqueued_batches=int(row["max_enqueued_batches"]),
        allowed_batch_sizes=allowed_sizes(row),
        cpus=cpus,
        model_variant=variant,
        **batch,
        **threads,
    )


def allowed_sizes(row: dict[str, Any]) -> tuple[int, ...]:
    """allowed_batch_sizes from a config's tuple or a CSV cell ("2;4;8"; empty or absent: any size)."""
    value = row.get("allowed_batch_sizes") or ()
    if isinstance(value, str):
        return tuple(int(v) for v in value.split(";") if v.strip())
    return tuple(int(v) for v in value)
