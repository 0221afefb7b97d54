"""Diagnosis, not a score: a few configs live against the model's latency percentiles (validation-plan.md,
"Addendum: calls taken as Eigen's pool takes them"). Prints one JSON line a config.

    python benchmarks/tails_diagnosis.py --profile PROFILE.json          # live trials and the model's answers
    python benchmarks/tails_diagnosis.py --profile PROFILE.json --batch-op   # the batch op's cases
    python benchmarks/tails_diagnosis.py --profile PROFILE.json --resimulate DIAGNOSIS.jsonl > WITH_THIS_MODEL.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import stop_if_interrupted
from record_grid import TAILS, _b

from autotune.knobs import ServingConfig
from autotune.perfmodel.profile import Profile
from autotune.perfmodel.simulate import Load, simulate
from autotune.procs import interrupt_on_sigterm

METRICS = ("throughput_rps", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "cpu_cores")
MEASURED = (*METRICS, "server_mean_batch_size", "requests")

CASES = [
    ("defaults c=1", ServingConfig(), 1),
    ("defaults c=4", ServingConfig(), 4),
    ("1 intra / 1 inter c=4", ServingConfig(intra_op_threads=1, inter_op_threads=1), 4),
    ("1 intra / 2 inter c=4", ServingConfig(intra_op_threads=1, inter_op_threads=2), 4),
    ("batch 4, 2 ms, 2 batch threads, 1/2 c=4", _b(4, 2000, 2, 1, 2), 4),
    ("defaults c=8", ServingConfig(), 8),
]


def batching_cases() -> list[tuple[str, ServingConfig, int]]:
    """The batched configs of record_grid.py's TAILS set, at its load (6 clients): their batch sizes, live."""
    return [
        (
            f"batch {c.max_batch_size}, {c.batch_timeout_micros} us, {c.num_batch_threads} batch threads, "
            f"{c.intra_op_threads}/{c.inter_op_threads}, cpus {c.cpus:g}, queue {c.max_enqueued_batches}",
            c,
            6,
        )
        for c in TAILS
        if c.enable_batching
    ]


def _u(intra: int, inter: int) -> ServingConfig:
    return ServingConfig(intra_op_threads=intra, inter_op_threads=inter)


# The batch op against no batching at 10 clients (validation-plan.md, "Addendum: the batch op's own CPU"): batches of 1
# pass every request through the op alone; batches of 4 with a 100 ms timeout run full.
BATCH_OP_CASES = [
    ("unbatched 1/1", _u(1, 1), 10),
    ("batch 1 pass-through, 1 bt, 1/1", _b(1, 1000, 1, 1, 1), 10),
    ("batch 4 full (100 ms), 1 bt, 1/1", _b(4, 100000, 1, 1, 1), 10),
    ("unbatched 1/2", _u(1, 2), 10),
    ("batch 1 pass-through, 2 bt, 1/2", _b(1, 1000, 2, 1, 2), 10),
    ("batch 4 full (100 ms), 2 bt, 1/2", _b(4, 100000, 2, 1, 2), 10),
    ("unbatched 2/1", _u(2, 1), 10),
    ("batch 4 full (100 ms), 1 bt, 2/1", _b(4, 100000, 1, 2, 1), 10),
]


def predicted(profile: Profile, config: ServingConfig, concurrency: int) -> dict[str, float]:
    p = simulate(profile, config, Load(concurrency=concurrency), "grpc", requests=4000)
    return {k: round(getattr(p, k), 2) for k in (*METRICS, "mean_batch_size")}


def main() -> None:
    interrupt_on_sigterm()  # a SIGTERM stops what it started, as Ctrl-C does
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", type=Path, required=True)
    ap.add_argument("--resimulate", type=Path, help="add this model's answers to a diagnosis file's rows")
    ap.add_argument("--batching", action="store_true", help="the TAILS set's batched configs, not the first six")
    ap.add_argument("--batch-op", action="store_true", help="the batch op against no batching (BATCH_OP_CASES)")
    a = ap.parse_args()
    cases = batching_cases() if a.batching else BATCH_OP_CASES if a.batch_op else CASES
    doc = json.loads(a.profile.read_text())
    doc.pop("cached", None)
    profile = Profile.from_json(doc)
    if a.resimulate:
        for (label, config, c), line in zip(cases, a.resimulate.read_text().splitlines()[1:], strict=True):
            row = json.loads(line)
            assert row["config"] == label
            print(json.dumps({**row, "predicted_revision": predicted(profile, config, c)}))
        return
    from autotune.measure import MeasureSettings, run_trial
    from autotune.models.resolve import resolve_model
    from autotune.servers.backends import resolve_backend

    model = resolve_model(profile.model)
    for label, config, c in cases:
        s = MeasureSettings(
            protocol="grpc",
            concurrency=c,
            window_s=2.0,
            warmup_s=1.0,
            max_windows=10,
            measure_unloaded=False,
            monitoring=True,  # the server's own counts: its mean batch size
        )
        result = run_trial(model, config, s, resolve_backend("local", check=False))
        stop_if_interrupted(result.failure_reason)
        m = result.metrics
        measured = {k: round(m.get(k) or 0, 2) for k in MEASURED}
        print(
            json.dumps(
                {"config": label, "concurrency": c, "measured": measured, "predicted": predicted(profile, config, c)}
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
