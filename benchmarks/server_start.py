"""What starting a stand-in server costs, forked ready-imported or exec'd, and whether the way it starts changes
what a trial measures.

Start (tiny): per run, one server exec'd (a fresh interpreter) and one forked from the fork server
(servers/prefork.py), in alternating order: start to AVAILABLE, stop, RSS and threads once AVAILABLE; beside
one bare TF import. The fork server is started (and TF imported in it) before the first run, as a job's first
server starts it.
Trials (--trials N, per --model): N pairs of whole trials of TF Serving's defaults, one server exec'd and one
forked (order alternating), compared as `compare` compares pairs: ratio forked/exec'd with its 95% interval and
the verdict at a 5% threshold, on throughput, p99, server CPU, RSS, start-up and the trial's wall time.
Probes (--probes N, --probe-model M): N pairs of `autotune profile`'s probes of M at 1 and 2 intra-op threads, one
forked and one exec'd (order alternating): each point's median call time and CPU, and each probe's wall time. The
headline is the geometric mean over the points of a side's median call times, compared as a p50 latency is.

    python benchmarks/server_start.py --runs 8 --trials 6 --model tiny --trials-resnet 10 --model resnet --out FILE.json
    python benchmarks/server_start.py --runs 0 --probes 6 --probe-model resnet --out FILE.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from _common import provenance

from autotune.knobs import ServingConfig
from autotune.measure import MeasureSettings, free_ports, run_trial
from autotune.models.resolve import ModelRef, resolve_model
from autotune.perfmodel.measure import probe
from autotune.procs import interrupt_on_sigterm
from autotune.servers.argv import one_model_argv
from autotune.servers.backends import local_backend
from autotune.servers.prefork import START_ENV
from autotune.servers.process import ServerProcess
from autotune.significance import DIRECTIONS, compare_metric, paired_estimate

IMPORT_TF = "from autotune.tfimport import import_tensorflow; import_tensorflow(keras=False)"
MODES = ("exec", "fork")
TRIAL_METRICS = ("throughput_rps", "latency_p99_ms", "cpu_cores", "rss_mb", "load_time_s", "trial_wall_s")
MIN_EFFECT = 0.05
PROBE_THREADS = (1, 2)
PROBE_BATCHES = [1, 8, 32]


def start_once(model: ModelRef, mode: str) -> dict[str, float]:
    """Start MODEL's server the MODE way, wait for AVAILABLE, read its RSS and threads, stop it."""
    os.environ[START_ENV] = mode
    grpc_port, rest_port = free_ports(2)
    argv = one_model_argv(local_backend().program, model.name, model.base_path, grpc_port, rest_port)
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(argv, Path(tmp) / "server.log")
        try:
            ready = server.wait_ready(rest_port, model.name, 120).load_time_s
            proc = psutil.Process(server.pid)
            rss_mb, threads = proc.memory_info().rss / 2**20, proc.num_threads()
        finally:
            began = time.monotonic()
            server.stop()
            stopped = time.monotonic() - began
    return {"ready_s": ready, "stop_s": stopped, "rss_mb": rss_mb, "threads": threads}


def start_runs(model: ModelRef, runs: int) -> list[dict[str, Any]]:
    """RUNS rounds of: one bare TF import, one exec'd and one forked start (order alternating)."""
    start_once(model, "fork")  # the fork server up, as a job's first server brings it up
    rows = []
    for i in range(runs):
        began = time.monotonic()
        subprocess.run([sys.executable, "-c", IMPORT_TF], check=True, capture_output=True)
        row: dict[str, Any] = {"run": i, "tf_import_s": time.monotonic() - began}
        for mode in MODES if i % 2 == 0 else MODES[::-1]:
            row[mode] = start_once(model, mode)
        rows.append(row)
        print(f"start run {i}: {json.dumps(row)}", file=sys.stderr)
    return rows


def trial_pairs(model: ModelRef, pairs: int, settings: MeasureSettings) -> list[dict[str, Any]]:
    """PAIRS rounds of one whole trial of the defaults per start mode (order alternating)."""
    rows = []
    for i in range(pairs):
        row: dict[str, Any] = {"pair": i}
        for mode in MODES if i % 2 == 0 else MODES[::-1]:
            os.environ[START_ENV] = mode
            result = run_trial(model, ServingConfig(), settings, local_backend())
            if result.failure_reason:
                raise SystemExit(f"{model.name} {mode} trial failed: {result.failure_message}")
            row[mode] = {m: result.metrics.get(m) for m in (*TRIAL_METRICS, "setup_s", "measure_s", "requests")}
        rows.append(row)
        print(f"{model.name} pair {i}: {json.dumps(row)}", file=sys.stderr)
    return rows


def probe_pairs(model: ModelRef, pairs: int, budget_s: float) -> list[dict[str, Any]]:
    """PAIRS rounds of MODEL's probes at each of PROBE_THREADS, forked and exec'd (order alternating)."""
    probe(model, 1, [1], 3, 1.0)  # the fork server up, as a profile's first probe brings it up
    rows = []
    for i in range(pairs):
        row: dict[str, Any] = {"pair": i}
        for mode in MODES if i % 2 == 0 else MODES[::-1]:
            os.environ[START_ENV] = mode
            side: dict[str, Any] = {}
            for threads in PROBE_THREADS:
                began = time.monotonic()
                points, foreign = probe(model, threads, PROBE_BATCHES, 3, budget_s)
                side[str(threads)] = {
                    "probe_s": round(time.monotonic() - began, 3),
                    "foreign_cores": round(foreign, 3),
                    "points": {
                        str(p.batch): {"wall_ms": p.wall_ms, "cpu_ms": p.cpu_ms, "repeats": p.repeats} for p in points
                    },
                }
            row[mode] = side
        rows.append(row)
        print(f"{model.name} probe pair {i}: {json.dumps(row)}", file=sys.stderr)
    return rows


def geomean_call_ms(side: dict[str, Any], key: str = "wall_ms") -> float:
    """The geometric mean over a side's points (every thread count and batch) of their median call KEY."""
    values = [pt[key] for probe_doc in side.values() for pt in probe_doc["points"].values()]
    return math.exp(statistics.fmean(math.log(v) for v in values))


def summarize_probes(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline (call time, compared as a p50 latency), the CPU per call and the probe's time, forked/exec'd;
    and each point's call-time ratio with its 95% interval."""
    sides = {mode: [r[mode] for r in rows] for mode in MODES}
    wall = compare_metric(
        "latency_p50_ms",
        [geomean_call_ms(s) for s in sides["exec"]],
        [geomean_call_ms(s) for s in sides["fork"]],
        paired=True,
        min_effect=MIN_EFFECT,
    )
    out: dict[str, Any] = {"call_wall_ms_geomean": wall.to_json()}
    for name, values in (
        ("call_cpu_ms_geomean", lambda s: geomean_call_ms(s, "cpu_ms")),
        ("probe_s", lambda s: sum(p["probe_s"] for p in s.values())),
    ):
        est = paired_estimate([values(s) for s in sides["exec"]], [values(s) for s in sides["fork"]])
        out[name] = None if est is None else {"ratio": est.ratio, "ci95": list(est.interval(0.05))}
    per_point = {}
    for threads in map(str, PROBE_THREADS):
        for batch in map(str, PROBE_BATCHES):
            a, b = ([s[threads]["points"][batch]["wall_ms"] for s in sides[m]] for m in MODES)
            est = paired_estimate(a, b)
            per_point[f"t{threads}-b{batch}"] = (
                None if est is None else {"ratio": est.ratio, "ci95": list(est.interval(0.05))}
            )
    out["per_point_wall"] = per_point
    return out


def summarize(rows: list[dict[str, Any]], metrics: tuple[str, ...]) -> dict[str, Any]:
    """Per metric: medians a side and forked/exec'd as a paired comparison with its verdict."""
    out = {}
    for m in metrics:
        a, b = [r["exec"][m] for r in rows], [r["fork"][m] for r in rows]
        out[m] = compare_metric(m, a, b, paired=True, min_effect=MIN_EFFECT).to_json()
        if m not in DIRECTIONS:  # compare reads an unknown metric as "maximize": its verdict would say nothing
            out[m]["verdict"] = out[m]["direction"] = None
    return out


def main() -> None:
    interrupt_on_sigterm()  # a SIGTERM stops what it started, as Ctrl-C does
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="start rounds (tiny)")
    p.add_argument("--trials", type=int, default=0, help="pairs of whole trials per --model")
    p.add_argument("--trials-resnet", type=int, help="pairs for resnet, if not --trials")
    p.add_argument("--model", action="append", default=[], help="built-in model for the trial pairs (repeatable)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--protocol", default="grpc")
    p.add_argument("--probes", type=int, default=0, help="pairs of profiling probes of --probe-model")
    p.add_argument("--probe-model", default="resnet")
    p.add_argument("--probe-budget-s", type=float, default=4.0, help="seconds of repeats per probe")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    tiny = resolve_model("tiny")
    starts = start_runs(tiny, a.runs) if a.runs else []
    doc: dict[str, Any] = {
        "provenance": provenance("server_start.py"),
        "starts": starts,
        "start_summary": {
            "tf_import_s": round(statistics.median(r["tf_import_s"] for r in starts), 3),
            **summarize(starts, ("ready_s", "stop_s", "rss_mb", "threads")),
        }
        if starts
        else {},
        "trials": {},
    }
    if a.probes:
        rows = probe_pairs(resolve_model(a.probe_model), a.probes, a.probe_budget_s)
        doc["probes"] = {
            "model": a.probe_model,
            "threads": PROBE_THREADS,
            "batches": PROBE_BATCHES,
            "budget_s": a.probe_budget_s,
            "pairs": rows,
            "summary": summarize_probes(rows),
        }
    settings = MeasureSettings(protocol=a.protocol, concurrency=a.concurrency)
    for name in a.model:
        pairs = a.trials_resnet if name == "resnet" and a.trials_resnet else a.trials
        rows = trial_pairs(resolve_model(name), pairs, settings)
        doc["trials"][name] = {
            "settings": dataclasses.asdict(settings),
            "pairs": rows,
            "summary": summarize(rows, TRIAL_METRICS),
        }
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    summaries = {k: v["summary"] for k, v in doc["trials"].items()}
    probes = {"probes": doc["probes"]["summary"]} if a.probes else {}
    print(json.dumps({"start": doc["start_summary"], **summaries, **probes}, indent=1))


if __name__ == "__main__":
    main()
