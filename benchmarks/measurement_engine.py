"""Measurement-engine figures: batching vs TF Serving defaults, thread knobs, repeatability.

Runs `autotune bench --json` (fresh server each time) side by side in one run and
writes a markdown section with machine, date, command and every figure.

    python benchmarks/measurement_engine.py --model resnet --concurrency 8 --out benchmarks/measurement_engine.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from _common import machine

from autotune.load.stats import coefficient_of_variation


def bench(model: str, concurrency: int, settings: list[str], window_s: float, protocol: str) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "autotune.cli",
        "bench",
        "--model",
        model,
        "--concurrency",
        str(concurrency),
        "--window-s",
        str(window_s),
        "--protocol",
        protocol,
        "--json",
    ]
    for s in settings:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if not proc.stdout.strip():
        raise SystemExit(f"bench failed: {proc.stderr.strip().splitlines()[-1:]}")
    result = json.loads(proc.stdout)
    print(
        f"{settings or ['defaults']}: {result.get('throughput_rps')} rps, p99 {result.get('latency_p99_ms')} ms, "
        f"cpu {result.get('cpu_cores')} cores, stable {result.get('stable')}",
        file=sys.stderr,
        flush=True,
    )
    return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--window-s", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--protocol", default="rest")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()

    batching = [
        f"max_batch_size={a.batch}",
        "batch_timeout_micros=20000",
        "num_batch_threads=1",
        "max_enqueued_batches=100",
    ]
    one_thread = ["intra_op_threads=1", "inter_op_threads=1"]
    # Interleave defaults and batching so slow drift of the host hits both alike.
    runs = {"defaults": [], "batching": []}
    for _ in range(a.repeats):
        runs["defaults"].append(bench(a.model, a.concurrency, [], a.window_s, a.protocol))
        runs["batching"].append(bench(a.model, a.concurrency, batching, a.window_s, a.protocol))
    threads = bench(a.model, a.concurrency, one_thread, a.window_s, a.protocol)
    rows = [("defaults", r) for r in runs["defaults"]] + [("batching", r) for r in runs["batching"]]
    rows.append(("intra=1, inter=1", threads))

    def mean(name: str, key: str) -> float:
        vals = [r[key] for r in runs[name]]
        return sum(vals) / len(vals)

    ratio_tp = mean("batching", "throughput_rps") / mean("defaults", "throughput_rps")
    ratio_p99 = mean("batching", "latency_p99_ms") / mean("defaults", "latency_p99_ms")
    cpu_ratio = threads["cpu_cores"] / mean("defaults", "cpu_cores")
    cmd = " ".join(["python", "benchmarks/measurement_engine.py", *sys.argv[1:]])
    lines = [
        f"## Measurement engine: {a.model}, concurrency {a.concurrency}, {a.protocol}",
        "",
        f"- machine: {machine()}",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `{cmd}`",
        f"- each row is one `autotune bench --json` with a fresh server; window {a.window_s:g} s, "
        "stable when the last 3 windows agree within 10%",
        "",
        "| config | throughput rps | p50 ms | p99 ms | unloaded p50 ms | cpu cores | stable | client saturated |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['throughput_rps']:.2f} | {r['latency_p50_ms']:.1f} | {r['latency_p99_ms']:.1f} | "
            f"{r['unloaded_latency_p50_ms']:.1f} | {r['cpu_cores']:.2f} | {r['stable']} | {r['client_saturated']} |"
        )
    lines += [
        "",
        f"- batching (max_batch_size {a.batch}) vs TF Serving defaults, mean of {a.repeats}: "
        f"throughput x{ratio_tp:.2f}, p99 x{ratio_p99:.2f}",
        f"- intra/inter-op threads 1/1 vs defaults (0/0): server CPU x{cpu_ratio:.2f} "
        f"({threads['cpu_cores']:.2f} vs {mean('defaults', 'cpu_cores'):.2f} cores)",
    ]
    for name in ("defaults", "batching"):
        tp = [r["throughput_rps"] for r in runs[name]]
        p99 = [r["latency_p99_ms"] for r in runs[name]]
        lines.append(
            f"- repeatability, {name}, {a.repeats} fresh servers: throughput CV {coefficient_of_variation(tp):.1%}, "
            f"p99 CV {coefficient_of_variation(p99):.1%}"
        )
    a.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
