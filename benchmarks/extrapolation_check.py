"""How far do the large simulated spaces' thread counts carry? Amdahl's law fitted on a profile's 1-2 threads
(what the race's 16- and 64-core spaces rest on), against what the same profile measured at more threads.

    python benchmarks/extrapolation_check.py --profile benchmarks/data/profile-mobilenet-cpu16-2026-12-04.json \
        --fit 1,2 --out benchmarks/data/extrapolation-mobilenet-cpu16-2026-12-04.csv

Nothing is fitted to the held-out thread counts: the curve sees only the --fit points, as the race's did.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from _common import write_csv

from autotune.perfmodel.profile import CostCurve, Profile


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", type=Path, required=True)
    p.add_argument("--fit", default="1,2", help="the thread counts the curve may see")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    profile = Profile.from_json(json.loads(a.profile.read_text()))
    fit = {int(t) for t in a.fit.split(",")}
    points = [pt for pt in profile.points if pt.variant == "savedmodel"]
    curve = CostCurve([pt for pt in points if pt.threads in fit])
    rows = []
    for pt in points:
        if pt.threads in fit:
            continue
        predicted, _ = curve.cost(pt.batch, pt.threads)
        rows.append(
            {
                "threads": pt.threads,
                "batch": pt.batch,
                "measured_wall_ms": round(pt.wall_ms, 3),
                "extrapolated_wall_ms": round(predicted, 3),
                "err": round((predicted - pt.wall_ms) / pt.wall_ms, 4),
            }
        )
    write_csv(a.out, "extrapolation_check.py", rows)
    for t in sorted({r["threads"] for r in rows}):
        errs = [r["err"] for r in rows if r["threads"] == t]
        print(
            f"{t} threads: extrapolated/measured wall, median {1 + statistics.median(errs):.2f} "
            f"(range {1 + min(errs):.2f}-{1 + max(errs):.2f}) over {len(errs)} batch sizes",
            file=sys.stdout,
        )


if __name__ == "__main__":
    main()
