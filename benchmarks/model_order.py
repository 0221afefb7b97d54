"""Where the race's optimum falls in the model's own order: a bound on what a model-seeded plan can find.

For each space of search_at_scale.py and each run seed, the model is drawn as the race's model-seeded entrant
draws it (the truth times exp(b + s z), (b, s) the performance model's miss on its live grid, z one normal draw
per config and metric; here without the entrant's second simulation, whose own spread is far smaller than s).
Configs the model predicts to meet the SLO are ranked by predicted throughput, and the figure is the rank of the
first config whose true goodput is within 95% of the space's best: the live trials a job would spend measuring
the model's order until it reached the optimum, if its plan saw every config. A plan that sees a sample sees
the optimum only as often as the sample holds it.

    python benchmarks/model_order.py --out benchmarks/data/model-order-2026-12-05.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import numpy as np
import search_at_scale as sas

ORDER_SEED = 2000  # the draws here: not the entrant's (1000 + run seed) nor the truth's (0)


def ranks(space: sas.Space, seeds: int) -> list[int]:
    """Per run seed, the rank in the model's order of the first config within NEAR of the optimum (0: none)."""
    points = list(space.points.values())
    draw = [p.draws[0] for p in points]
    thr = np.array([d.throughput_rps for d in draw])
    p99 = np.array([d.latency_p99_ms for d in draw])
    ok = np.array([d.error_rate <= sas.MAX_ERROR_RATE for d in draw])
    target = np.array([p in space.targets for p in points])
    (tb, ts), (pb, ps) = (sas.model_error(space.spec.model)[m] for m in ("throughput_rps", "latency_p99_ms"))
    out = []
    for seed in range(seeds):
        rng = np.random.default_rng([ORDER_SEED, seed])
        thr_pred = thr * np.exp(tb + ts * rng.normal(size=len(points)))
        p99_pred = p99 * np.exp(pb + ps * rng.normal(size=len(points)))
        order = [i for i in np.argsort(-thr_pred, kind="stable") if ok[i] and p99_pred[i] <= space.slo_ms]
        hits = [k + 1 for k, i in enumerate(order) if target[i]]
        out.append(hits[0] if hits else 0)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--spaces", default="", help="comma-separated space names (default: the race's four)")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    named = a.spaces.split(",") if a.spaces else [s.name for s in sas.SPACES]
    report = {}
    for spec in [s for s in sas.SPACES + sas.HELD_OUT_SPACES if s.name in named]:
        space = sas.build_space(spec, sas.ensure_truth(spec))
        got = ranks(space, a.seeds)
        found = sorted(r for r in got if r)
        limit = sas.MODEL_SEEDED_TARGET * space.size
        report[spec.name] = {
            "size": space.size,
            "optimum_configs": len(space.targets),
            "ranks": got,
            "median": statistics.median_high(found) if len(found) == len(got) else None,
            "within_1pct": sum(1 for r in got if 0 < r <= limit),
            "sample_200_holds_optimum": round(
                1 - math.comb(space.size - len(space.targets), 200) / math.comb(space.size, 200), 3
            ),
        }
        print(f"{spec.name}: {report[spec.name]}")
    if a.out:
        a.out.write_text(json.dumps({"seeds": a.seeds, "order_seed": ORDER_SEED, "spaces": report}, indent=1) + "\n")


if __name__ == "__main__":
    main()
