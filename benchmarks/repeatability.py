"""Repeatability: the same configs measured N times, each with a fresh server, with and without the
stability rule; the coefficient of variation of throughput and p99 across the repeats.

Rules compared (all at the same fixed load, runs interleaved so host drift hits every rule alike):
- fixed: 3 windows, their mean (no agreement check);
- rule: windows until the last 3 agree within 10% (throughput and p99), at most 10 (autotune's default);
- rule-long: the rule with windows twice as long.

    python benchmarks/repeatability.py --model tiny --protocol grpc --concurrency 8 --repeats 5 \
        --out benchmarks/repeatability-tiny.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import provenance

from autotune.knobs import ServingConfig
from autotune.load.stats import coefficient_of_variation
from autotune.models.resolve import resolve_model
from autotune.servers.backends import resolve_backend
from autotune.trial import MeasureSettings, run_trial

CONFIGS = {
    "defaults": ServingConfig(),
    "batching": ServingConfig(
        enable_batching=True, max_batch_size=8, batch_timeout_micros=1000, num_batch_threads=2, intra_op_threads=1
    ),
}


def rules(window_s: float) -> dict[str, dict]:
    return {
        "fixed": dict(window_s=window_s, stable_windows=3, tolerance=1e9, max_windows=3),
        "rule": dict(window_s=window_s, stable_windows=3, tolerance=0.10, max_windows=10),
        "rule-long": dict(window_s=2 * window_s, stable_windows=3, tolerance=0.10, max_windows=10),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--protocol", default="grpc")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--window-s", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rules", default="fixed,rule,rule-long")
    p.add_argument("--out", type=Path)
    p.add_argument("--plot", type=Path, help="boxplot PNG of throughput per config and rule")
    a = p.parse_args()
    model = resolve_model(a.model)
    backend = resolve_backend("local")
    chosen = {k: v for k, v in rules(a.window_s).items() if k in a.rules.split(",")}
    runs: dict[tuple[str, str], list[dict]] = {(c, r): [] for c in CONFIGS for r in chosen}
    for i in range(a.repeats):
        for cname, config in CONFIGS.items():
            for rname, rule in chosen.items():
                settings = MeasureSettings(
                    protocol=a.protocol, concurrency=a.concurrency, warmup_s=0.5, measure_unloaded=False, **rule
                )
                result = run_trial(model, config, settings, backend)
                m = result.metrics
                runs[(cname, rname)].append(m)
                print(
                    f"[{i + 1}/{a.repeats}] {cname} {rname}: {m.get('throughput_rps')} rps, "
                    f"p99 {m.get('latency_p99_ms')} ms, stable {m.get('stable')} {result.failure_reason or ''}",
                    file=sys.stderr,
                    flush=True,
                )
    lines = [
        f"## Repeatability: {a.model}, {a.protocol}, concurrency {a.concurrency}, {a.repeats} fresh servers each",
        "",
        *provenance("repeatability.py"),
        "",
        "| config | rule | throughput mean rps | throughput CV | p99 mean ms | p99 CV | stable runs | measured s/run |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    summary = {}
    for (cname, rname), ms in runs.items():
        ok = [m for m in ms if m.get("throughput_rps") is not None]
        tp = [m["throughput_rps"] for m in ok]
        p99 = [m["latency_p99_ms"] for m in ok]
        cv_tp, cv_p99 = coefficient_of_variation(tp), coefficient_of_variation(p99)
        summary[f"{cname}/{rname}"] = {"throughput": tp, "p99": p99, "cv_throughput": cv_tp, "cv_p99": cv_p99}
        measure_s = sum(m.get("measure_s", 0) for m in ok) / max(len(ok), 1)
        lines.append(
            f"| {cname} | {rname} | {sum(tp) / len(tp):.1f} | {cv_tp:.1%} | {sum(p99) / len(p99):.1f} | {cv_p99:.1%} "
            f"| {sum(bool(m.get('stable')) for m in ok)}/{len(ms)} | {measure_s:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.write_text(text)
        a.out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    if a.plot:
        boxplot(summary, a.plot, a.model)


def boxplot(summary: dict, out: Path, model: str) -> None:
    """Throughput across repeats, one box per config and rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.8))
    for axis, key, label in ((ax[0], "throughput", "throughput rps"), (ax[1], "p99", "p99 ms")):
        axis.boxplot([summary[n][key] for n in names])
        axis.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right", fontsize=7)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    fig.suptitle(f"{model}: repeated measurements, fresh server each")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
