"""Tuned vs defaults, confirmed: tune a model with `autotune start` (the search, then its confirmation of
the front against TF Serving's defaults), then `autotune compare` the config `autotune export` would
deploy (the balanced pick; min-cost for a cost study) against the defaults on fresh servers, interleaved,
at the study's load.

A gain is claimed only where the verdict says `better`. The pre-registered estimate is the job's own
confirmation of the pick (sequential, Holm over its candidates x objectives); the compare, named before
it runs, is the second estimate printed beside it. The JSON keeps every figure behind both: the job's
confirmed front with both sides of every confirmation run, and both sides of every compared run, each
with its server's pid and start time.

    python benchmarks/tuned_vs_defaults.py --model resnet --out benchmarks/data/tuned-resnet.json
    python benchmarks/tuned_vs_defaults.py --study benchmarks/studies/tiny-grpc.toml \
        --out benchmarks/data/tuned-tiny.json
    python benchmarks/tuned_vs_defaults.py --study benchmarks/studies/mobilenet-cost.toml \
        --out benchmarks/data/cost-mobilenet.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import changed_knobs, provenance

from autotune.confirm import summary_line
from autotune.knobs import is_default_config
from autotune.measure import MeasureSettings
from autotune.pareto import default_pick, pick_index
from autotune.procs import interrupt_on_sigterm, run_command
from autotune.spec import Study, load_study, study_for_model
from autotune.tuner import study_is_feasible


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    # Interrupted, the command is passed the interruption and stops its own servers.
    return run_command([sys.executable, "-m", "autotune.cli", *args], env=env, timeout=7200)


def assignments(config: dict) -> list[str]:
    """`--set` arguments for the knobs of CONFIG that differ from TF Serving's defaults."""
    out = []
    for k, v in changed_knobs(config).items():
        out += ["--set", f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"]
    return out


def run_compare(env: dict, study: Study, model: str, config: dict, a: argparse.Namespace) -> dict:
    """`autotune compare` of CONFIG (B) against the defaults (A) at the study's load, backend and signature."""
    load = ["--concurrency", str(study.concurrency)] if study.rate is None else ["--rate", str(study.rate)]
    if a.compare_repeats is not None:  # a fixed count, as before issue 25
        rule = ["--repeats", str(a.compare_repeats)]
    else:
        rule = ["--precision", str(a.precision), "--max-repeats", str(a.max_repeats)]
    args = ["--model", model, *assignments(config), *rule, "--min-effect", str(a.min_effect), *load]
    args += ["--protocol", study.protocol, "--window-s", str(a.window_s), "--json"]
    args += ["--backend", study.backend, "--signature", study.signature]
    print(f"comparing: autotune compare {' '.join(args)}", file=sys.stderr, flush=True)
    compared = cli(env, "compare", *args)
    if compared.returncode != 0:
        raise SystemExit(f"error: compare failed: {compared.stderr.strip().splitlines()[-1:]}")
    result = json.loads(compared.stdout)
    fraction = MeasureSettings().min_achieved_fraction
    for side in ("a", "b"):  # runs of each side that met the study's SLO, error limit and limits, stably
        runs = result[side]["runs"]
        result[side]["slo_met_runs"] = sum(study_is_feasible(r, study, fraction) for r in runs)
    return {"command": "autotune compare " + " ".join(args), **result}


def all_trials(url: str, model: str) -> list[dict]:
    """Every trial of the model's job (single draws of the search), with why each failed or was infeasible."""
    from autotune.fingerprint import fingerprint, host_info
    from autotune.store import Store

    job = Store(url).pick_job(model, None, fingerprint(host_info()))
    keys = ("throughput_rps", "latency_p99_ms", "cpu_cores", "load_time_s", "requests", "stable", "accuracy")
    return [
        {
            "trial": t.number,
            "state": t.state,
            "config": t.config,
            "feasible": t.feasible,
            "failure_reason": t.failure_reason,
            "metrics": {k: (t.metrics or {}).get(k) for k in keys},
        }
        for t in job.trials
    ]


def main() -> None:
    interrupt_on_sigterm()  # a SIGTERM stops what it started, as Ctrl-C does
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="a built-in model (its study in studies/)")
    p.add_argument("--study", type=Path, help="a study file instead of --model's")
    p.add_argument("--trials", type=int, help="default: the study's")
    p.add_argument("--confirm-repeats", type=int, default=3, help="the job's least confirmation rounds")
    p.add_argument("--compare-repeats", type=int, help="fixed servers a side (default: sequential)")
    p.add_argument("--precision", type=float, default=0.05, help="compare stops at a 95%% CI within +-this")
    p.add_argument("--max-repeats", type=int, default=10, help="compare's most servers a side")
    p.add_argument("--min-effect", type=float, default=0.02, help="practical threshold for compare's verdicts")
    p.add_argument("--window-s", type=float, default=2.0)
    p.add_argument("--out", type=Path, required=True, help="the JSON data file")
    a = p.parse_args()
    if not a.model and not a.study:
        raise SystemExit("error: give --model or --study")
    study = load_study(a.study) if a.study else study_for_model(a.model)
    if study.concurrency is None and study.rate is None:
        raise SystemExit("error: the study ramps its load; compare needs a fixed one (set [load] concurrency)")
    model = study.model
    env = dict(os.environ)
    started = time.monotonic()
    # One home and store for the tuning and the compare: the model is built once, nothing is left behind.
    with tempfile.TemporaryDirectory(prefix="autotune-tvd-") as tmp:
        env["AUTOTUNE_HOME"] = str(Path(tmp) / "home")
        env["AUTOTUNE_DB_URL"] = f"sqlite:///{tmp}/tune.db"
        source = ["--study", str(a.study)] if a.study else ["--model", model]
        budget = ["--trials", str(a.trials)] if a.trials else []
        tune_args = [*source, *budget, "--confirm-repeats", str(a.confirm_repeats), "--window-s", str(a.window_s)]
        print(f"tuning: autotune start {' '.join(tune_args)} --foreground", file=sys.stderr, flush=True)
        tuned = cli(env, "start", *tune_args, "--foreground", "--json")
        if tuned.returncode != 0:
            raise SystemExit(f"error: tuning failed: {tuned.stderr.strip().splitlines()[-1:]}")
        tune_s = time.monotonic() - started
        front = json.loads(cli(env, "pareto", "--model", model, "--json").stdout or "[]")
        trials = all_trials(env["AUTOTUNE_DB_URL"], model)
        if not front:
            raise SystemExit("error: the job left no Pareto set")
        how = default_pick(list(study.objectives))
        pick = front[pick_index([e["metrics"] for e in front], how)]
        out = {
            "provenance": provenance("tuned_vs_defaults.py"),
            "study": {
                "model": model,
                "protocol": study.protocol,
                "concurrency": study.concurrency,
                "rate": study.rate,
                "slo_p99_ms": study.slo_p99_ms,
                "max_error_rate": study.max_error_rate,
                "trials": a.trials or study.trials,
                "objectives": study.objectives,
                "limits": study.limits,
            },
            "tune_s": round(tune_s),
            "front": front,
            "trials": trials,
            "job_verdict": summary_line(front, list(study.objectives)),
            "pick": {"how": how, "trial": pick["trial"], "config": pick["config"]},
            # The pre-registered estimate: the job's own confirmation of the pick (None when not confirmed).
            "pick_confirmation": {
                k: pick.get(k)
                for k in ("verdict", "message", "vs_defaults", "alpha_adjusted", "confirmation", "defaults_runs")
            }
            if pick.get("confirmation")
            else None,
            "compare": None,
        }
        if is_default_config(pick["config"]):
            print("the balanced pick is TF Serving's defaults: nothing to compare", file=sys.stderr)
        else:
            out["compare"] = run_compare(env, study, model, pick["config"], a)
    out["total_s"] = round(time.monotonic() - started)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    job = out["pick_confirmation"]
    if job:
        print(
            f"{model}: pick trial {pick['trial']}, the job's confirmation: {_figures(job['vs_defaults'])}; "
            f"{job['verdict']} ({job['message']}); {job['confirmation']['rounds']} rounds, "
            f"stopped on {job['confirmation']['stopped']}"
        )
    c = out["compare"]
    if c:
        print(
            f"{model}: pick trial {pick['trial']} vs defaults, compare: {_figures(c['metrics'])}; overall "
            f"{c['verdict']} ({c['message']}); {c['stopping']['rounds']} pairs, stopped on {c['stopping']['stopped']}; "
            f"SLO met {c['a']['slo_met_runs']}/{len(c['a']['runs'])} defaults, "
            f"{c['b']['slo_met_runs']}/{len(c['b']['runs'])} pick (failed runs: "
            f"{c['a']['median']['failed_runs']} defaults, {c['b']['median']['failed_runs']} pick)"
        )


def _figures(metrics: dict) -> str:
    """Throughput, p99 and cost (where measured): ratio, the verdict's interval, verdict and mde."""
    parts = []
    for name in ("throughput_rps", "latency_p99_ms", "cost_per_1k_requests"):
        m = metrics.get(name)
        if not m or not m.get("ratio"):
            continue
        lo, hi = m.get("ratio_ci") or m["ratio_ci95"]
        mde = f", mde {m['mde']:.1%}" if m.get("mde") is not None else ""
        parts.append(f"{name} x{m['ratio']:.3f} ({lo:.3f}-{hi:.3f}) {m['verdict']}{mde}")
    return "; ".join(parts)


if __name__ == "__main__":
    main()
