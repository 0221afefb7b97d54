"""Tuned vs defaults: tune a model with `autotune start`, then measure the best config and TF Serving's
defaults side by side (alternating, fresh server each run) at the study's load, under its SLO.

Goodput of one run = throughput if p99 met the study's SLO and the error limit, else 0.

    python benchmarks/tuned_vs_defaults.py --model resnet --trials 10 --repeats 3 --out benchmarks/tuned-resnet.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import provenance

from autotune.job import config_from_dict, study_settings
from autotune.knobs import ServingConfig
from autotune.models.resolve import resolve_model
from autotune.servers.backends import resolve_backend
from autotune.spec import study_for_model
from autotune.trial import run_trial


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autotune.cli", *args], capture_output=True, text=True, env=env, timeout=7200
    )


def goodput(m: dict, slo_ms: float | None, max_error_rate: float) -> float:
    p99, tp = m.get("latency_p99_ms"), m.get("throughput_rps")
    if tp is None or p99 is None or (slo_ms is not None and p99 > slo_ms):
        return 0.0
    return tp if (m.get("error_rate") or 0) <= max_error_rate else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--window-s", type=float, default=2.0)
    p.add_argument("--db", help="use this store's tuning instead of tuning now (an AUTOTUNE_DB_URL)")
    p.add_argument("--keep-db", type=Path, help="tune into this SQLite file and keep it (the tuning trials)")
    p.add_argument("--out", type=Path)
    a = p.parse_args()

    study = study_for_model(a.model)
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="autotune-tvd-") as tmp:
        tune_db = a.keep_db.resolve() if a.keep_db else Path(tmp) / "tune.db"
        env["AUTOTUNE_DB_URL"] = a.db or f"sqlite:///{tune_db}"
        if not a.db:
            window = ["--window-s", str(a.window_s)]
            tuned = cli(env, "start", "--model", a.model, "--trials", str(a.trials), "--minutes", str(a.minutes),
                        "--foreground", "--json", *window)  # fmt: skip
            if tuned.returncode != 0:
                raise SystemExit(f"error: tuning failed: {tuned.stderr.strip().splitlines()[-1:]}")
        front = json.loads(cli(env, "pareto", "--model", a.model, "--json").stdout or "[]")
    if not front:
        raise SystemExit("error: no Pareto set to compare")
    best_entry = max(front, key=lambda e: goodput(e["metrics"], study.slo_p99_ms, study.max_error_rate))
    best = config_from_dict(best_entry["config"])
    model, backend = resolve_model(study.model), resolve_backend("local")
    settings = study_settings(study, window_s=a.window_s, measure_unloaded=False)
    runs: dict[str, list[dict]] = {"defaults": [], "tuned": []}
    for i in range(a.repeats):
        for name, config in (("defaults", ServingConfig()), ("tuned", best)):
            m = run_trial(model, config, settings, backend).metrics
            runs[name].append(m)
            print(f"[{i + 1}/{a.repeats}] {name}: {m.get('throughput_rps')} rps, p99 {m.get('latency_p99_ms')} ms",
                  file=sys.stderr, flush=True)  # fmt: skip

    def mean(name: str, f) -> float:
        vals = [f(m) for m in runs[name]]
        return sum(vals) / len(vals)

    g = {n: mean(n, lambda m: goodput(m, study.slo_p99_ms, study.max_error_rate)) for n in runs}
    tp = {n: mean(n, lambda m: m.get("throughput_rps") or 0.0) for n in runs}
    p99 = {n: mean(n, lambda m: m.get("latency_p99_ms") or 0.0) for n in runs}
    ratio = "defaults miss the SLO in every run" if g["defaults"] == 0 else f"x{g['tuned'] / g['defaults']:.2f}"
    lines = [
        f"## Tuned vs defaults: {a.model} ({study.protocol}, concurrency {study.concurrency}, "
        f"SLO p99 <= {study.slo_p99_ms:g} ms)",
        "",
        *provenance("tuned_vs_defaults.py"),
        f"- tuned config (trial {best_entry.get('trial')} of the tuning run): `{json.dumps(best.to_dict())}`",
        "",
        "| config | runs | goodput rps (mean) | throughput rps | p99 ms | each run: rps / p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for n in runs:
        each = ", ".join(f"{m.get('throughput_rps')}/{m.get('latency_p99_ms')}" for m in runs[n])
        lines.append(f"| {n} | {len(runs[n])} | {g[n]:.2f} | {tp[n]:.2f} | {p99[n]:.1f} | {each} |")
    lines += [
        "",
        f"- goodput, tuned vs defaults: **{ratio}**; throughput x{tp['tuned'] / tp['defaults']:.2f}, "
        f"p99 x{p99['tuned'] / p99['defaults']:.2f}",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    main()
