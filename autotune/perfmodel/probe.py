"""One profiling process: a model's batch costs at one intra-op thread count (TF fixes threads at start-up).

    python -m autotune.perfmodel.probe BASE_PATH SIGNATURE THREADS BATCHES REPEATS BUDGET_S [INTER_OP_THREADS [TFLITE]]

The model runs as the stand-in runs it (servers/local/servable.py: the signature inside a tf.function, numpy
in and out), so a call costs here what it costs the server; the signature called eagerly was 15-40% slower.
With TFLITE 1, the version's model.tflite runs instead, through one interpreter (--prefer_tflite_model).

prints one JSON object: {"points": [{batch, wall_ms, wall_ci95_ms, cpu_ms, wall_sd_log, repeats}, ...]}.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# One call longer than this ends the ladder: larger batches extrapolate (profile.CostCurve).
MAX_CALL_S = 2.0


# Fast calls repeat while the point's budget lasts, up to this many: their medians need more samples.
MAX_REPEATS = 200
WARMUP_S = 0.3


def measure(fn: Any, repeats: int, budget_s: float) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds of at least 3 calls: REPEATS or more while BUDGET_S lasts (MAX_REPEATS)."""
    started = time.perf_counter()
    fn()  # the first call of a shape pays for tracing and allocation
    while time.perf_counter() - started < min(WARMUP_S, budget_s / 4):
        fn()
    walls: list[float] = []
    cpus: list[float] = []
    started = time.perf_counter()
    while len(walls) < 3 or (len(walls) < MAX_REPEATS and time.perf_counter() - started < budget_s):
        if len(walls) >= repeats and time.perf_counter() - started > budget_s / 2:
            break
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return walls, cpus


def main(argv: list[str]) -> None:
    base_path, signature_name, threads, batches, repeats, budget, *rest = argv
    import tensorflow as tf

    from autotune.load.stats import quantile_ci95
    from autotune.models.resolve import latest_version
    from autotune.models.signature import read_signatures
    from autotune.servers.local.servable import Servable
    from autotune.traffic.payload import synthetic_tensors

    # One execution's threads: T intra-op threads and one inter-op thread (the model runs concurrent executions
    # side by side in inter-op slots), unless told (TF Serving's defaults, for the transport's baseline).
    tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    tf.config.threading.set_inter_op_parallelism_threads(int(rest[0]) if rest else 1)
    base = Path(base_path)
    signature = read_signatures(base / str(latest_version(base)))[signature_name]
    tflite = len(rest) > 1 and rest[1] == "1"
    servable = Servable(base, batching=None, tflite_pools=1 if tflite else None)
    if tflite and servable.format != "tflite":
        raise SystemExit(f"{base}: no model.tflite in the version directory")
    sizes = [int(b) for b in batches.split(",")]
    per_point = float(budget) / len(sizes)
    points = []
    for batch in sizes:
        inputs = synthetic_tensors(signature, batch, seed=batch)
        walls, cpus = measure(lambda x=inputs: servable.predict(signature_name, x), int(repeats), per_point)
        ms = [w * 1000 for w in walls]
        low, high = quantile_ci95(ms, 0.5)  # type: ignore[misc]
        points.append(
            {
                "batch": batch,
                "wall_ms": statistics.median(ms),
                "wall_ci95_ms": [low, high],
                "cpu_ms": statistics.median(c * 1000 for c in cpus),
                # Call-to-call spread (log scale: positive, skewed), so simulated latencies spread as measured.
                "wall_sd_log": statistics.stdev(math.log(w) for w in walls) if len(walls) > 1 else 0.0,
                "repeats": len(ms),
            }
        )
        if statistics.median(walls) > MAX_CALL_S:
            break
    print(json.dumps({"points": points}))


if __name__ == "__main__":
    main(sys.argv[1:])
