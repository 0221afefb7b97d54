"""One profiling process: a model's batch costs at one intra-op thread count (TF fixes threads at start-up).

    python -m autotune.perfmodel.probe BASE_PATH SIGNATURE THREADS BATCHES REPEATS BUDGET_S [INTER_OP_THREADS [TFLITE]]
    python -m autotune.perfmodel.probe --batch-op BASE_PATH SIGNATURE BUDGET_S

The model runs as the stand-in runs it (servers/local/servable.py: the signature inside a tf.function, numpy
in and out), so a call costs here what it costs the server; the signature called eagerly was 15-40% slower.
With TFLITE 1, the version's model.tflite runs instead, through one interpreter (--prefer_tflite_model).

prints one JSON object: {"points": [{batch, wall_ms, wall_ci95_ms, cpu_ms, wall_sd_log, repeats}, ...]}.
With --batch-op: the CPU a request costs going through the stand-in's batch op, beyond its share of a direct call
of the same batch (each request is its own call there; the curve's batch is one), on one thread:
{"batch_op_cpu_ms": median, "ci95_ms": [low, high], "pairs": [per pair, ms], "block_s": seconds}.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autotune.servers.local.servable import Servable

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


# The batch op is measured at these full batches, in pairs of short blocks (direct, then through the op, the order
# alternating) so that the host's drift between blocks cancels; the first pair of each size warms its shapes up.
BATCH_OP_SIZES = (2, 8)
BATCH_OP_PAIRS = 6
BATCH_OP_BLOCK_S = (0.1, 1.0)  # a block's least and most seconds, within the budget
# Long enough that a block's batches are full (its callers never stop), short enough that a block's end waits little.
BATCH_OP_TIMEOUT_US = 100_000


def cpu_per_item_ms(call: Any, items_per_call: int, callers: int, seconds: float) -> float:
    """Process CPU per item while CALLERS threads call CALL (ITEMS_PER_CALL items each) for SECONDS."""
    stop, done = threading.Event(), [0]

    def loop() -> None:
        while not stop.is_set():
            call()
            done[0] += items_per_call

    threads = [threading.Thread(target=loop) for _ in range(callers)]
    for t in threads:
        t.start()
    try:
        time.sleep(min(0.2, seconds / 4))  # every caller in its loop before the count starts
        cpu0, items0 = time.process_time(), done[0]
        time.sleep(seconds)
        cpu1, items1 = time.process_time(), done[0]
    finally:
        stop.set()
        for t in threads:
            t.join()
    return 1000 * (cpu1 - cpu0) / max(items1 - items0, 1)


def batch_op_cpu(base: Path, signature_name: str, budget_s: float) -> dict[str, Any]:
    """The batch op's CPU per request (see the module's docstring), from BATCH_OP_PAIRS pairs at each size."""
    from autotune.load.stats import quantile_ci95
    from autotune.models.resolve import latest_version
    from autotune.models.signature import read_signatures
    from autotune.servers.local.servable import BatchingOptions
    from autotune.traffic.payload import synthetic_tensors

    signature = read_signatures(base / str(latest_version(base)))[signature_name]
    direct = _servable(base, batching=None)
    blocks = len(BATCH_OP_SIZES) * (BATCH_OP_PAIRS + 1) * 2
    block_s = min(max(budget_s / blocks, BATCH_OP_BLOCK_S[0]), BATCH_OP_BLOCK_S[1])
    pairs: list[float] = []
    for size in BATCH_OP_SIZES:
        options = BatchingOptions(size, BATCH_OP_TIMEOUT_US, 1, 4 * size, ())
        batched = _servable(base, batching=options, name=f"batch_op_{size}")
        whole, one = synthetic_tensors(signature, size, seed=size), synthetic_tensors(signature, 1, seed=1)

        def direct_ms(x: Any = whole, n: int = size) -> float:  # one caller, the whole batch a call
            return cpu_per_item_ms(lambda: direct.predict(signature_name, x), n, 1, block_s)

        def op_ms(x: Any = one, n: int = size, op: Servable = batched) -> float:  # n callers, a request each
            return cpu_per_item_ms(lambda: op.predict(signature_name, x), 1, n, block_s)

        for i in range(BATCH_OP_PAIRS + 1):
            if i % 2:
                whole_ms, through_ms = direct_ms(), op_ms()
            else:
                through_ms, whole_ms = op_ms(), direct_ms()
            if i:  # the first pair warms the shapes up
                pairs.append(through_ms - whole_ms)
    low, high = quantile_ci95(pairs, 0.5)  # type: ignore[misc]
    return {"batch_op_cpu_ms": statistics.median(pairs), "ci95_ms": [low, high], "pairs": pairs, "block_s": block_s}


def _servable(base: Path, **options: Any) -> Servable:
    """The model as the stand-in loads it; one that does not load ends the probe with one line."""
    from autotune.servers.local.servable import Servable, load_failure

    try:
        return Servable(base, **options)
    except Exception as exc:  # TF raises many types for corrupt or incompatible models
        raise SystemExit(str(load_failure(base, exc))) from None


def main(argv: list[str]) -> None:
    if argv[0] == "--batch-op":
        import tensorflow as tf

        # One thread each, as the profile's curve at one thread: the op's own cost, not the pools' spinning.
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        print(json.dumps(batch_op_cpu(Path(argv[1]), argv[2], float(argv[3]))))
        return
    base_path, signature_name, threads, batches, repeats, budget, *rest = argv
    import tensorflow as tf

    from autotune.load.stats import quantile_ci95
    from autotune.models.resolve import latest_version
    from autotune.models.signature import read_signatures
    from autotune.traffic.payload import synthetic_tensors

    # One execution's threads: T intra-op threads and one inter-op thread (the model runs concurrent executions
    # side by side in inter-op slots), unless told (TF Serving's defaults, for the transport's baseline).
    tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    tf.config.threading.set_inter_op_parallelism_threads(int(rest[0]) if rest else 1)
    base = Path(base_path)
    signature = read_signatures(base / str(latest_version(base)))[signature_name]
    tflite = len(rest) > 1 and rest[1] == "1"
    servable = _servable(base, batching=None, tflite_pools=1 if tflite else None)
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
