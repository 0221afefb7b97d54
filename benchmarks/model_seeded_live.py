"""Live evidence for model-seeded jobs (issue 26): the same study tuned with the performance model's seeds and
with the batching guide's, SEEDS jobs each, on this host, every job on a fresh copy of one home that holds the
model's profile (so no job learns from another's front, and the profile is measured once).

The rule, fixed before the first job (docs/benchmarks.md gives it too):
- a job's pick is its balanced pick (the one `autotune export` deploys) of its confirmed front; its gain is the
  job's own confirmation of that pick against TF Serving's defaults (throughput ratio, paired fresh servers);
- the best is the largest confirmed gain over every job of both arms; a job reached it when its pick's gain is at
  least (1 - NOISE) of the best;
- its live trials to reach it: the job's live trials up to the pick's, counting TF Serving's defaults as trial 1
  (the pick's trial number + 1 while every number was a live trial); a job that did not reach it counts as its
  budget + 1 (censored, and said);
- targets (the issue's): the model-seeded median <= 3 trials, and <= 0.5 x the guide-seeded median.

Since the fourth MobileNetV2 run (validation-plan.md, its addendum of 2026-12-05 19:40 UTC) a run ends with a
head-to-head: TF Serving's defaults and every distinct pick of every job, measured in one block of interleaved
rounds on fresh servers (`H2H_ROUNDS` each). A job's gain is then its pick's median throughput in that block over
the defaults' median in it, so every pick is judged against the same defaults at the same time; the rest of the
rule is unchanged, and the jobs' own confirmations give the earlier rule's figures beside it (`by_confirmation`).

    python benchmarks/model_seeded_live.py --study benchmarks/studies/mobilenet_float-variants-relaxed.toml \
        --seeds 5 --trials 8 --out benchmarks/data/model-seeded-live-mobilenet.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import provenance

from autotune.knobs import SAVEDMODEL, ServingConfig, config_from_dict
from autotune.pareto import default_pick, pick_index
from autotune.procs import interrupt_on_sigterm, run_command
from autotune.spec import load_study

NOISE = 0.10  # a confirmed gain within 10% of the best is the best, as far as 3+3 servers can tell
H2H_ROUNDS = 3  # fresh servers a config in the head-to-head, as in each job's confirmation
ARMS = ("model", "guide")
PREDICTED = ("throughput_rps", "latency_p99_ms", "cpu_cores")


def cli(env: dict[str, str], *args: str, timeout: float = 7200) -> subprocess.CompletedProcess:
    # Interrupted, the command is passed the interruption and stops its own servers.
    return run_command([sys.executable, "-m", "autotune.cli", *args], env=env, timeout=timeout)


def arm_order(seed: int) -> tuple[str, ...]:
    """The two arms of one seed, alternating which goes first, so that drift over the hours favours neither."""
    return ARMS if seed % 2 else ARMS[::-1]


def job_study(study_text: str, arm: str, seed: int) -> str:
    """The study file of one job: the study with its seed source and sampler seed set (top-level keys first)."""
    return f'seeds = "{arm}"\nseed = {seed}\n' + study_text


def readout(url: str, model: str) -> dict[str, Any]:
    """The one job in the store at URL: its trials (measured and predicted, with times from the job's start)."""
    from autotune.store import Store

    jobs = Store(url).jobs_of(model)
    if len(jobs) != 1:
        raise SystemExit(f"error: expected one job in {url}, found {len(jobs)}")
    job = jobs[0]
    start = job.started_at or job.created_at

    def offset(t: Any) -> float | None:
        return None if t is None else round((t - start).total_seconds(), 1)

    trials = []
    for t in job.trials:
        m = t.metrics or {}
        predicted = {k: getattr(t, f"predicted_{k}") for k in PREDICTED}
        trials.append(
            {
                "trial": t.number,
                "state": t.state,
                "config": t.config,
                "feasible": t.feasible,
                "failure_reason": t.failure_reason,
                "measured": {k: m.get(k) for k in (*PREDICTED, "stable", "requests")},
                "accuracy_problem": (m.get("accuracy") or {}).get("problem"),
                "predicted": predicted if any(v is not None for v in predicted.values()) else None,
                "started_s": offset(t.started_at),
                "finished_s": offset(t.finished_at),
            }
        )
    return {
        "job_id": job.id,
        "state": job.state,
        "tuned_s": offset(job.finished_at),
        "predicted_front": job.predicted_front,
        "trials": trials,
    }


def pick_of(front: list[dict[str, Any]], objectives: list[str]) -> dict[str, Any] | None:
    """The balanced pick of a confirmed front, with its confirmed throughput gain over the defaults."""
    if not front:
        return None
    entry = front[pick_index([e["metrics"] for e in front], default_pick(objectives))]
    vs = entry.get("vs_defaults") or {}
    on_defaults = entry["trial"] == 0
    gain = 1.0 if on_defaults else (vs.get("throughput_rps") or {}).get("ratio")
    return {
        "trial": entry["trial"],
        "config": entry["config"],
        "gain": gain,
        "verdict": entry.get("verdict"),
        "message": entry.get("message"),
        "vs_defaults": vs,
    }


def run_job(template: Path, study_text: str, model: str, arm: str, seed: int, a: argparse.Namespace) -> dict:
    """One job on a fresh copy of TEMPLATE: tune, confirm, read back."""
    objectives = list(load_study(a.study).objectives)
    with tempfile.TemporaryDirectory(prefix="autotune-seeded-") as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(template, home, symlinks=True)
        env = {**os.environ, "AUTOTUNE_HOME": str(home)}
        env.pop("AUTOTUNE_DB_URL", None)
        study_file = Path(tmp) / "study.toml"
        study_file.write_text(job_study(study_text, arm, seed))
        args = ["--study", str(study_file), "--trials", str(a.trials), "--window-s", str(a.window_s)]
        args += ["--confirm-repeats", str(a.confirm_repeats), "--confirm-max-repeats", str(a.confirm_repeats)]
        print(f"{arm} seed {seed}: autotune start {' '.join(args)} --foreground", file=sys.stderr, flush=True)
        started = time.monotonic()
        tuned = cli(env, "start", *args, "--foreground", "--json")
        wall = time.monotonic() - started
        if tuned.returncode != 0:
            raise SystemExit(f"error: the {arm} job of seed {seed} failed: {tuned.stderr.strip().splitlines()[-1:]}")
        front = json.loads(cli(env, "pareto", "--model", model, "--json").stdout or "[]")
        said = [line for line in tuned.stderr.splitlines() if "seeds:" in line or "drift" in line]
        record = readout(f"sqlite:///{home / 'autotune.db'}", model)
    return {
        "arm": arm,
        "seed": seed,
        "wall_s": round(wall, 1),
        "said": said,
        **record,
        "front": front,
        "pick": pick_of(front, objectives),
    }


def reach(gain: float | None, job: dict[str, Any], best: float, budget: int) -> tuple[int, bool]:
    """Live trials until JOB's pick was measured (defaults = 1), and whether its GAIN reached the best.

    Counted as the job's trials up to the pick's number, not the number itself: an Optuna trial that never ran
    live (a model's pick dropped after drift, say) has a number but no row."""
    pick = job["pick"]
    ok = pick is not None and gain is not None and gain >= (1 - NOISE) * best
    return (sum(t["trial"] <= pick["trial"] for t in job["trials"]), True) if ok else (budget + 1, False)


def h2h_configs(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The head-to-head's entrants: TF Serving's defaults first, then each distinct pick in the jobs' order (a
    config counts once however its dict was stored: knobs at their defaults spelled out or left out)."""
    configs = {ServingConfig(): ServingConfig().to_dict()}
    for j in jobs:
        if j["pick"]:
            configs.setdefault(config_from_dict(j["pick"]["config"]), j["pick"]["config"])
    return list(configs.values())


def h2h_medians(block: dict[str, Any]) -> dict[ServingConfig, float | None]:
    """Each entrant's median throughput over its good runs in the block (None under 2 good runs)."""
    out = {}
    for side in block["sides"]:
        rps = [r["metrics"]["throughput_rps"] for r in side["runs"] if r["ok"] and r["metrics"].get("throughput_rps")]
        out[config_from_dict(side["config"])] = statistics.median(rps) if len(rps) >= 2 else None
    return out


def h2h_gains(doc: dict[str, Any]) -> list[float | None]:
    """Each job's gain by the head-to-head: its pick's median over the defaults' median, both from the block."""
    medians = h2h_medians(doc["head_to_head"])
    defaults = medians[ServingConfig()]
    gains = []
    for j in doc["jobs"]:
        rps = medians.get(config_from_dict(j["pick"]["config"])) if j["pick"] else None
        gains.append(rps / defaults if rps and defaults else None)
    return gains


def figures(doc: dict[str, Any]) -> dict[str, Any]:
    """The rule's figures (gains from the head-to-head where the run has one), with the earlier rule's beside."""
    own = rule_figures(doc, [j["pick"]["gain"] if j["pick"] else None for j in doc["jobs"]])
    if "head_to_head" not in doc:
        return own
    return {**rule_figures(doc, h2h_gains(doc)), "gains_from": "head_to_head", "by_confirmation": own}


def rule_figures(doc: dict[str, Any], job_gains: list[float | None]) -> dict[str, Any]:
    """The rule's figures given each job's gain: per job and per arm, and the model's error on its trials."""
    jobs = doc["jobs"]
    budget = doc["trials"]
    best = max(g for g in job_gains if g is not None)
    per_job = []
    for j, gain in zip(jobs, job_gains, strict=True):
        n, ok = reach(gain, j, best, budget)
        trial = next((t for t in j["trials"] if j["pick"] and t["trial"] == j["pick"]["trial"]), None)
        per_job.append(
            {
                "arm": j["arm"],
                "seed": j["seed"],
                "pick_trial": j["pick"]["trial"] if j["pick"] else None,
                "pick_variant": (j["pick"]["config"].get("model_variant", SAVEDMODEL) if j["pick"] else None),
                "gain": gain,
                "verdict": j["pick"]["verdict"] if j["pick"] else None,
                "trials_to_best": n,
                "reached": ok,
                "seconds_to_best": trial["finished_s"] if ok and trial else None,
                "job_s": j["wall_s"],
            }
        )
    arms = {}
    for arm in ARMS:
        rows = [r for r in per_job if r["arm"] == arm]
        counts = [r["trials_to_best"] for r in rows]
        secs = [r["seconds_to_best"] for r in rows if r["seconds_to_best"] is not None]
        arms[arm] = {
            "jobs": len(rows),
            "reached": sum(r["reached"] for r in rows),
            "median_trials": statistics.median(counts) if counts else None,
            "range_trials": [min(counts), max(counts)] if counts else None,
            "median_seconds": statistics.median(secs) if secs else None,
            "median_job_s": statistics.median(r["job_s"] for r in rows) if rows else None,
        }
    model, guide = arms["model"]["median_trials"], arms["guide"]["median_trials"]
    return {
        "best_gain": best,
        "noise": NOISE,
        "jobs": per_job,
        "arms": arms,
        "ratio_of_medians": model / guide if model and guide else None,
        "target_trials_met": model is not None and model <= 3,
        "target_ratio_met": model is not None and guide is not None and model <= 0.5 * guide,
        "model_error": model_error(jobs),
    }


def arm_line(f: dict[str, Any], arm: str) -> str:
    """One arm's figures as the documents print them."""
    s = f["arms"][arm]
    low, high = s["range_trials"]
    return (
        f"{arm}-seeded: {s['reached']} of {s['jobs']} jobs reached the best, "
        f"median {s['median_trials']:g} live trials (range {low}-{high})"
    )


def model_error(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median |predicted / measured - 1| over the model-seeded jobs' measured trials, overall and by variant:
    predictions made before the trial ran, so every one is held out."""
    misses: dict[str, dict[str, list[float]]] = {}
    for j in jobs:
        for t in j["trials"]:
            p, m = t["predicted"], t["measured"]
            if not p or t["state"] != "complete" or not m.get("throughput_rps"):
                continue
            variant = t["config"].get("model_variant", SAVEDMODEL)
            for k in ("throughput_rps", "latency_p99_ms"):
                if p.get(k) and m.get(k):
                    for key in (variant, "all"):
                        misses.setdefault(key, {}).setdefault(k, []).append(abs(p[k] / m[k] - 1))
    return {
        key: {k: {"n": len(v), "median_abs_error": statistics.median(v)} for k, v in by.items()}
        for key, by in sorted(misses.items())
    }


def template_profile(template: Path, model: str, protocol: str, variants: tuple[str, ...]) -> dict[str, Any]:
    """The profile (with VARIANTS) in the home TEMPLATE: measured there unless cached, then read back."""
    env = {**os.environ, "AUTOTUNE_HOME": str(template)}
    env.pop("AUTOTUNE_DB_URL", None)
    wanted = ["--variants", ",".join(variants)] if variants else []
    args = ["--model", model, "--transport", protocol, "--json", *wanted]
    got = cli(env, "profile", *args)
    if got.returncode != 0:
        raise SystemExit(f"error: profiling failed: {got.stderr.strip().splitlines()[-1:]}")
    return json.loads(got.stdout)


def run_jobs(template: Path, a: argparse.Namespace, model: str, partial: Path) -> list[dict[str, Any]]:
    """Both arms of every seed, each job appended to PARTIAL as it ends (a crash or a time limit keeps them)."""
    jobs = []
    for seed in range(1, a.seeds + 1):
        for arm in arm_order(seed):
            job = run_job(template, a.study.read_text(), model, arm, seed, a)
            with partial.open("a") as f:
                f.write(json.dumps(job) + "\n")
            jobs.append(job)
            pick = job["pick"] or {}
            print(
                f"{arm} seed {seed}: pick trial {pick.get('trial')}, gain {pick.get('gain')}, {job['wall_s']:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    return jobs


def head_to_head(template: Path, a: argparse.Namespace, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """The defaults and every distinct pick, H2H_ROUNDS interleaved rounds on fresh servers, in a copy of TEMPLATE
    and at the jobs' load and window; every run kept (pid, start, figures) so each gain recomputes."""
    from autotune.compare import live_measure, measure_interleaved
    from autotune.job import study_settings
    from autotune.models.resolve import resolve_model
    from autotune.servers.backends import resolve_backend

    study = load_study(a.study)
    study = dataclasses.replace(study, windows=study.windows.with_overrides(window_s=a.window_s))
    configs = h2h_configs(jobs)
    with tempfile.TemporaryDirectory(prefix="autotune-h2h-") as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(template, home, symlinks=True)
        os.environ["AUTOTUNE_HOME"] = str(home)
        os.environ.pop("AUTOTUNE_DB_URL", None)
        model = resolve_model(study.model, study.signature)
        measure = live_measure(model, study_settings(study), resolve_backend(study.backend))

        def say(msg: str) -> None:
            print(f"head-to-head {msg}", file=sys.stderr, flush=True)

        started = time.monotonic()
        measured = measure_interleaved([config_from_dict(c) for c in configs], H2H_ROUNDS, measure, say)
    return {
        "rounds": measured.rounds,
        "seconds": round(time.monotonic() - started),
        "sides": [{"config": c, "runs": side.run_records()} for c, side in zip(configs, measured.sides, strict=True)],
    }


def whole_seeds(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The jobs of the seeds whose every arm ran: a seed cut short by a stop would favour the arm that ran first."""
    done = {s for s in {j["seed"] for j in jobs} if {j["arm"] for j in jobs if j["seed"] == s} == set(ARMS)}
    return [j for j in jobs if j["seed"] in done]


def main() -> None:
    interrupt_on_sigterm()  # a SIGTERM stops what it started, as Ctrl-C does
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", type=Path, required=True)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--confirm-repeats", type=int, default=3, help="fresh servers a side for each confirmation")
    p.add_argument("--window-s", type=float, default=2.0)
    p.add_argument("--template", type=Path, help="a home holding the model's profile (default: profile one here)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--from-partial",
        action="store_true",
        help="no new job: the figures of the whole seeds in OUT's partial file (a run stopped by its time limit)",
    )
    p.add_argument("--no-head-to-head", action="store_true", help="score by the jobs' own confirmations only")
    a = p.parse_args()
    study = load_study(a.study)
    model = study.model
    partial = a.out.with_suffix(".partial.jsonl")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="autotune-seeded-template-") as tmp:
        template = a.template or Path(tmp) / "home"
        # Measured here unless --template holds it; read back from the cache either way, for the data file.
        profile = template_profile(template, model, study.protocol, study.model_variants)
        ran = [json.loads(line) for line in partial.read_text().splitlines()] if a.from_partial else []
        jobs = whole_seeds(ran) if a.from_partial else run_jobs(template, a, model, partial)
        block = None if a.no_head_to_head else head_to_head(template, a, jobs)
    doc = {
        "provenance": provenance("model_seeded_live.py"),
        "study": str(a.study),
        "model": model,
        "trials": a.trials,
        "confirm_repeats": a.confirm_repeats,
        "window_s": a.window_s,
        "seeds_asked": a.seeds,
        "seeds_done": len({j["seed"] for j in jobs}),
        "profile_s": profile["seconds"],
        "profile": profile,
        # A run read back from its partial file has no wall clock of its own: its jobs' walls, summed.
        "total_s": round(sum(j["wall_s"] for j in jobs)) if a.from_partial else round(time.monotonic() - started),
        "jobs": jobs,
        "jobs_not_counted": [j for j in ran if j not in jobs],  # a seed the stop cut short: kept, not scored
    }
    if block is not None:
        doc["head_to_head"] = block
    doc["figures"] = figures(doc)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    partial.unlink(missing_ok=True)  # its jobs are all in OUT now; it only kept them through a crash
    f = doc["figures"]
    print_figures(f, "head-to-head" if "head_to_head" in doc else "confirmed")
    if "by_confirmation" in f:
        print("the earlier rule (each job's own confirmation against its own defaults), beside it:")
        print_figures(f["by_confirmation"], "confirmed")


def print_figures(f: dict[str, Any], how: str) -> None:
    """The rule's figures as the run prints them."""
    print(f"the best: x{f['best_gain']:.2f} throughput over TF Serving's defaults ({how}); within {NOISE:.0%} counts")
    for arm in ARMS:
        print(f"{arm_line(f, arm)}; median {f['arms'][arm]['median_seconds']} s into the job")
    print(
        f"ratio of medians (model/guide): {f['ratio_of_medians']}; targets: <= 3 trials "
        f"{'met' if f['target_trials_met'] else 'missed'}, <= 0.5x {'met' if f['target_ratio_met'] else 'missed'}"
    )


if __name__ == "__main__":
    main()
