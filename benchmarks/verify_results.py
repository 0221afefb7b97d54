"""Recompute every headline figure from its data file and fail on a mismatch (CI runs it).

Each claim names a data file in benchmarks/data/, recomputes its figure from the raw runs stored there
(never from a ratio the file also stores), formats it as the documents print it, and checks that the
text appears in README.md, benchmarks/RESULTS.md or docs/benchmarks.md (bold marks ignored). Ratios
from compares are recomputed the way they were made: paired log-ratios by round where the file holds
both sides' rounds (issue 25 on), Welch's t on each side's runs before. Figures with no data file
behind them are listed as such; they fail the check once --strict is given.

    python benchmarks/verify_results.py [--strict]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from statistics import median
from typing import Any

from autotune.load.stats import coefficient_of_variation
from autotune.significance import (
    DIRECTIONS,
    Estimate,
    MetricComparison,
    StopRule,
    compare_metric,
    holm_alphas,
    paired_estimate,
    welch_estimate,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data"
DOCS = ("README.md", "benchmarks/RESULTS.md", "docs/benchmarks.md", "docs/reliability.md")
# The soaks of issue 29 and the figures each document states; the second run's long last daemon life is its own.
SOAKS = {
    "soak-2026-12-04.jsonl": ("run", "memory", "lateness", "leftovers"),
    "soak-2026-12-05.jsonl": ("run", "memory", "longest", "lateness", "leftovers"),
    "soak-2026-12-05-fixed.jsonl": ("run", "memory", "longest", "lateness", "leftovers"),
}

# Headline figures nothing in benchmarks/data/ backs yet (issue 25): the lead decides whether each gets a
# data file or goes.
NO_DATA = ("the confirmed ratios of jobs run before issue 25 (the defaults' confirmation runs were not stored)",)


def _load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def _by_round(side: dict[str, Any], metric: str) -> list[float | None]:
    """A side's figures indexed by round, None where the run failed."""
    runs = side["all_runs"]
    out: list[float | None] = [None] * (max(r["round"] for r in runs) + 1)
    for r in runs:
        if r["ok"]:
            out[r["round"]] = r["metrics"].get(metric)
    return out


def ratio(compare: dict[str, Any], metric: str, digits: int = 2) -> str:
    """'xR (LO-HI)' of B/A recomputed from a compare's runs: the 95% interval, as the tables print it."""
    if "all_runs" in compare["a"]:
        est = paired_estimate(_by_round(compare["a"], metric), _by_round(compare["b"], metric))
    else:
        est = welch_estimate(
            [r.get(metric) for r in compare["a"]["runs"]], [r.get(metric) for r in compare["b"]["runs"]]
        )
    return ratio_text(est, metric, digits)


def ratio_text(est: Estimate | None, what: str, digits: int = 2) -> str:
    """'xR (LO-HI)': EST's ratio and its 95% interval, as the tables print it (WHAT names it in the error)."""
    if est is None:
        raise ValueError(f"{what}: fewer than two runs a side")
    lo, hi = est.interval(0.05)
    return f"x{est.ratio:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def cv(name: str) -> str:
    runs = [r for r in _load(name)["runs"] if r.get("throughput_rps") is not None and not r.get("failure_reason")]
    return f"{coefficient_of_variation([r['throughput_rps'] for r in runs]):.1%}"


def aa_significant(name: str) -> str:
    """How many A/A compares found a difference, recomputed per compare from its runs."""
    compares = _load(name)["compares"]
    found = 0
    for c in compares:
        for metric in ("throughput_rps", "latency_p99_ms"):
            text = ratio(c, metric, 4)
            lo, hi = (float(x) for x in text.split("(")[1].rstrip(")").split("-"))
            found += not lo <= 1 <= hi
            if not lo <= 1 <= hi:
                break
    return f"{found} of {len(compares)} significant"


def aa_verdicts(name: str) -> str:
    """The A/A series' throughput verdicts and median detectable effect, per compare from its JSON."""
    metrics = [c["metrics"]["throughput_rps"] for c in _load(name)["compares"]]
    equivalent = sum(m["verdict"] == "equivalent" for m in metrics)
    mde = median(m["mde"] for m in metrics if m.get("mde") is not None)
    return f"equivalent {equivalent} of {len(metrics)}; median mde {mde:.1%}"


def comparisons_of(compare: dict[str, Any]) -> dict[str, MetricComparison]:
    """Each objective of a compare recomputed from its rounds as `compare` judges it: paired log-ratios, Holm over
    the objectives, its stopping rule's price (StopRule.sequential) and its practical threshold."""
    objectives = compare["objectives"]
    rounds = {m: (_by_round(compare["a"], m), _by_round(compare["b"], m)) for m in objectives}
    estimates = [paired_estimate(*rounds[m]) for m in objectives]
    if any(e is None for e in estimates):
        raise ValueError("fewer than two pairs")
    levels = holm_alphas([e.p_value() for e in estimates], compare["alpha"])
    rule = StopRule(**{k: compare["stopping"][k] for k in ("min_repeats", "max_repeats", "precision", "fixed")})
    return {
        m: compare_metric(
            m,
            *rounds[m],
            paired=True,
            min_effect=compare["metrics"][m]["min_effect"],
            alpha=level,
            sequential=rule.sequential,
        )
        for m, level in zip(objectives, levels, strict=True)
    }


def known_effect(name: str) -> str:
    """How often the known loss was called `worse` on throughput and p99, with the median ratios, from the rounds."""
    judged = [comparisons_of(c) for c in _load(name)["compares"]]
    n, tp, p99 = len(judged), "throughput_rps", "latency_p99_ms"
    worse = {m: sum(j[m].verdict == "worse" for j in judged) for m in (tp, p99)}
    ratio = {m: median(j[m].ratio for j in judged) for m in (tp, p99)}
    return (
        f"throughput `worse` in {worse[tp]} of {n} (median ratio x{ratio[tp]:.3f}); "
        f"p99 worse in {worse[p99]} of {n} (x{ratio[p99]:.3f})"
    )


def _validation(name: str) -> list[dict[str, str]]:
    import csv

    with (DATA / name).open() as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def validation(name: str, what: str) -> str:
    """A performance-model validation figure recomputed from its per-point measured and predicted columns."""
    from scipy.stats import spearmanr

    rows = _validation(name)
    if what.startswith("spearman_"):
        metric = what.removeprefix("spearman_")
        meas = [float(r[f"measured_{metric}"]) for r in rows]
        pred = [float(r[f"predicted_{metric}"]) for r in rows]
        return f"Spearman on {metric.split('_')[0]} {spearmanr(meas, pred).statistic:.3f}"
    metric, batched_only = what.removesuffix("_batched"), what.endswith("_batched")
    kept = [r for r in rows if r[f"err_{metric}"] and (r["batching"] == "True" or not batched_only)]
    errors = [abs(float(r[f"err_{metric}"])) for r in kept]
    return f"{what.replace('_', ' ')} error {median(errors):.1%}"


def batch_op(name: str) -> str:
    """The stand-in's batch op CPU per request as a profile measured it, with its 95% interval."""
    doc = _load(name)
    low, high = doc["batch_op_ci95_ms"]
    return f"batch op {doc['batch_op_cpu_ms']:.2f} ms a request (95% CI {low:.2f}-{high:.2f})"


def beside_insample(name: str, what: str) -> str:
    """The calls-beside candidate's in-sample check, from the diagnosis file's per-config lines of the configs its
    pricing moved: WHAT is "mean" (signed throughput error), "median" (|throughput error|) or "unbatched" (the
    median over the unbatched ones), each without and with it."""
    moved = []
    for line in (DATA / name).read_text().splitlines():
        found = re.search(r" alone ([+-][\d.]+)% beside ([+-][\d.]+)%$", line)
        if found and found.group(1) != found.group(2) and (line.startswith("b=0") or what != "unbatched"):
            moved.append((float(found.group(1)) / 100, float(found.group(2)) / 100))
    alone, beside = median(abs(a) for a, _ in moved), median(abs(b) for _, b in moved)
    if what == "mean":
        before, after = (sum(pair[i] for pair in moved) / len(moved) for i in (0, 1))
        return f"mean signed throughput error {before:+.1%} -> {after:+.1%}"
    if what == "unbatched":
        return f"Their {len(moved)} unbatched configs: median |error| {alone:.1%} -> {beside:.1%}"
    errors = f"median |throughput error| {alone:.1%} alone, {beside:.1%} priced beside"
    return f"{len(moved)} configs the pricing moved: {errors}"


def side_by_side(name: str, where: str) -> str:
    """Throughput of 1-thread over 2-thread calls by calls at once: in the server (WHERE "round 1" or "round 2")
    or in-process."""
    rows = [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.startswith("{")]
    live = where.startswith("round")

    def rate(threads: int, calls: int) -> float:
        if live:
            want = f"intra_op_threads={threads} inter_op_threads={calls}"
            return next(r["throughput_rps"] for r in rows if r.get("round") == int(where[-1]) and r["config"] == want)
        return median(r["calls_per_s"] for r in rows if r.get("threads") == threads and r["calls"] == calls)

    one, two, four = (rate(1, n) / rate(2, n) for n in (1, 2, 4))
    return f"{where}: {one:.2f} at 1{' call at a time' if live else ''}, {two:.2f} at 2, {four:.2f} at 4"


def race(space: str, file: str = "search-at-scale.json", seeded: bool = False) -> str:
    """Trials to 95% of the optimum, ours against random (and the model-seeded job's), from the race's per-seed
    counts (upper median, as search_at_scale.py takes it over an even number of seeds)."""

    def upper(name: str) -> int:
        return upper_median(file, space, name)

    first = f"model-seeded {upper('model-seeded')}, " if seeded else ""
    return f"{space}: {first}ours {upper('autotune')} vs random {upper('random')}"


def guide_after_model(space: str, before: str, after: str) -> str:
    """The model-seeded job's trials to 95% of the optimum (upper median) before and after the guide's seeds were
    added after the model's picks (validation-plan.md, "Addendum: the guide's seeds after the model's")."""
    return (
        f"{space}: model-seeded {upper_median(before, space, 'model-seeded')} before, "
        f"{upper_median(after, space, 'model-seeded')} after"
    )


def race_rerun(space: str, sampler: str, file: str, before: str) -> str:
    """An entrant's trials to 95% of the optimum in a rerun, beside its committed run on the same seeds: medians,
    then in how many seeds the rerun took fewer and more trials (seed by seed: same truth, same seed)."""
    new = _load(file)["spaces"][space]["samplers"][sampler]["counts"]
    old = _load(before)["spaces"][space]["samplers"][sampler]["counts"]
    fewer = sum(a < b for a, b in zip(new, old, strict=True))
    more = sum(a > b for a, b in zip(new, old, strict=True))
    seeds = f"fewer in {fewer} of {len(new)} seeds, more in {more}"
    return f"{space}, {sampler}: {_upper(new)} (was {_upper(old)}); {seeds}"


def race_seeded_only(space: str, file: str, label: str = "distinct seeds") -> str:
    """The model-seeded entrant's trials to 95% of the optimum, from a race run of that entrant alone."""
    return f"{space}: model-seeded {upper_median(file, space, 'model-seeded')} ({label})"


def median_holds(space: str, file: str, draws: int = 20_000) -> str:
    """How often the model-seeded entrant's upper median stays within 1% of the space when its seeds are resampled
    (bootstrap, fixed seed): how far a "met" rests on the runs it happened to have."""
    import random

    doc = _load(file)["spaces"][space]
    counts, limit = doc["samplers"]["model-seeded"]["counts"], 0.01 * doc["size"]
    rng = random.Random(1)
    held = sum(_upper(rng.choices(counts, k=len(counts))) <= limit for _ in range(draws))
    return f"{space}: the model-seeded median is within 1% of the space in {100 * held / draws:.0f}% of seed resamples"


def upper_median(file: str, space: str, sampler: str) -> int:
    """A race entrant's per-seed trials to 95% of the optimum, upper median (search_at_scale.py's, for even n)."""
    return _upper(_load(file)["spaces"][space]["samplers"][sampler]["counts"])


def _upper(counts: list[int]) -> int:
    """The upper median, as search_at_scale.py takes it over an even number of seeds."""
    return sorted(counts)[len(counts) // 2]


def _benchmark(name: str) -> Any:
    """A benchmark script of this folder as a module: its own reader and estimates, not a copy of them."""
    import importlib

    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    return importlib.import_module(name)


def storage_growth(file: str, mode: str, series: str = "rss_mib") -> str:
    """RSS growth per Optuna study with a storage each ('new') or one shared (or, for SERIES sessions_rss_mib, per
    unit of transactions with a sessionmaker each or one), recomputed from the RSS series."""
    doc = _load(file)
    s = _benchmark("storage_growth").summary(doc[series][mode])
    lo, hi = s["ci_mib"]
    unit = "study" if series == "rss_mib" else f"{doc['transactions_per_unit']} transactions"
    return f"{s['step_mib']:+.3f} MiB per {unit} (95% CI {lo:+.3f} to {hi:+.3f})"


@cache
def soak_figures(file: str) -> dict[str, Any]:
    """A soak's figures, computed once per data file by soak.py's own reader (several claims read each file)."""
    run = _benchmark("soak")
    return run.figures(run.read(DATA / file))


def soak(file: str, what: str) -> str:
    """A figure of the soak (issue 29), recomputed from the samples it recorded."""
    fig = soak_figures(file)
    if what == "run":
        injected = sum(fig["faults_injected"].values())
        jobs = sum(fig["jobs"].values())
        return f"{fig['hours']} h, {jobs} jobs, {fig['trials_measured']} trials measured, {injected} faults injected"
    if what == "memory":
        s = fig["rss_slope"]
        lo, hi = s["ci_mib"]
        lives = f"{s['daemons']} daemon {'life' if s['daemons'] == 1 else 'lives'}"
        return f"{s['slope_mib']:+.2f} MiB per job (95% CI {lo:+.2f} to {hi:+.2f}; {lives})"
    if what == "longest":
        life = fig["longest_daemon"]
        (lo, hi), (first, last) = life["ci_mib"], life["rss_mib"]
        return (
            f"{life['jobs']} jobs in {life['minutes']:.0f} min, RSS {first:.1f} to {last:.1f} MiB, "
            f"{life['slope_mib']:+.2f} MiB per job (95% CI {lo:+.2f} to {hi:+.2f})"
        )
    if what == "lateness":
        return f"greatest lateness {fig['late_s_max']:.0f} s over {fig['firings']} firings"
    if what == "leftovers":
        return (
            f"{fig['processes_left']} processes, {fig['trial_dirs_left']} trial directories, "
            f"{fig['cgroups_left']} cgroups, {fig['tmp_other_left']} other files in the temp dir"
        )
    raise ValueError(what)


# The tuned-vs-defaults reruns under issue 25's verdicts (pre-registered in validation-plan.md).
TUNED_RERUNS = (("ResNet50", "tuned-resnet-2026-12-06.json"), ("MobileNetV2", "tuned-mobilenet-2026-12-06.json"))


@dataclass(frozen=True)
class Claim:
    """One headline figure: where its data is and how to recompute the text the documents print."""

    what: str
    data: str
    text: Callable[[], str]


def _tuned(name: str, metric: str, prefix: str = "", digits: int = 2) -> Callable[[], str]:
    return lambda: prefix + ratio(_load(name)["compare"], metric, digits)


def job_confirmation(name: str, metric: str) -> str:
    """The job's own confirmation of its pick against the defaults, recomputed from both sides' stored rounds
    (issue 25 on: the defaults' confirmation runs are kept beside the pick's)."""
    doc = _load(name)
    pick = next(e for e in doc["front"] if e["trial"] == doc["pick"]["trial"])
    sides = {"a": {"all_runs": doc["pick_confirmation"]["defaults_runs"]}, "b": {"all_runs": pick["confirm_all_runs"]}}
    return ratio(sides, metric)


def compared(name: str, metric: str, prefix: str) -> str:
    """A tuning run's compare of its pick: ratio, 95% interval and verdict, each recomputed from the rounds."""
    compare = _load(name)["compare"]
    return f"{prefix}{ratio(compare, metric)} `{comparisons_of(compare)[metric].verdict}`"


def pagecache(file: str, mode: str) -> str:
    """The page-cache experiment's heaps from its first job to its last, recomputed from the per-job rows."""
    run = _benchmark("storage_growth")
    return run.pagecache_line(run.pagecache_summary(_load(file)["pagecache_mib"][mode]))


def live_seeded(name: str, arm: str, rule: str | None = None) -> str:
    """An arm of the live model-seeded evidence (issue 26) by its script's rule (RULE "by_confirmation": the
    earlier rule beside a head-to-head), each job's gain recomputed from both sides' confirmation rounds and the
    head-to-head's from its runs."""
    doc = _load(name)
    for job in doc["jobs"]:
        pick = job["pick"]
        entry = next((e for e in job["front"] if pick and e["trial"] == pick["trial"]), None)
        if entry is not None and entry.get("confirm_all_runs"):
            sides = [_by_round({"all_runs": entry[k]}, "throughput_rps") for k in ("defaults_runs", "confirm_all_runs")]
            est = paired_estimate(*sides)
            pick["gain"] = None if est is None else est.ratio
    run = _benchmark("model_seeded_live")
    figures = run.figures(doc)
    return run.arm_line(figures[rule] if rule else figures, arm)


FORK_TRIAL_METRICS = ("throughput_rps", "latency_p99_ms", "cpu_cores", "rss_mb", "load_time_s", "trial_wall_s")


def forked(name: str, part: str, metric: str, digits: int = 2) -> str:
    """A forked stand-in against an exec'd one (benchmarks/server_start.py): the paired ratio with its 95% interval
    and, for a metric with a direction, the verdict at 5%, recomputed from the rounds of PART (start or a model)."""
    doc = _load(name)
    rows = doc["starts"] if part == "start" else doc["trials"][part]["pairs"]
    sides = [[r[mode][metric] for r in rows] for mode in ("exec", "fork")]
    figure = ratio_text(paired_estimate(*sides), metric, digits)
    if metric not in DIRECTIONS:
        return figure
    return f"{figure} `{compare_metric(metric, *sides, paired=True, min_effect=0.05).verdict}`"


def forked_probes(name: str, figure: str) -> str:
    """Forked against exec'd profiling probes (server_start.py --probes): FIGURE "wall" (the geometric mean over the
    points of a side's median call time, paired, with its verdict as a p50's), "cpu" (the same of CPU per call) or
    "probe_s" (a pair's probes' wall time), recomputed from the pairs."""
    pairs = _load(name)["probes"]["pairs"]

    def side(mode: str) -> list[float]:
        if figure == "probe_s":
            return [sum(t["probe_s"] for t in r[mode].values()) for r in pairs]
        key = "cpu_ms" if figure == "cpu" else "wall_ms"
        logs = [[math.log(p[key]) for t in r[mode].values() for p in t["points"].values()] for r in pairs]
        return [math.exp(sum(x) / len(x)) for x in logs]

    text = ratio_text(paired_estimate(side("exec"), side("fork")), figure, 3)
    if figure != "wall":
        return text
    verdict = compare_metric("latency_p50_ms", side("exec"), side("fork"), paired=True, min_effect=0.05)
    return f"{text} `{verdict.verdict}` (mde {100 * verdict.mde:.1f}%)"


def suite_seconds(name: str) -> float:
    """The wall time pytest's summary line gives at the end of a suite run's log (`... passed ... in 812.34s`)."""
    found = re.findall(r"passed.* in ([0-9.]+)s", (DATA / name).read_text())
    if not found:
        raise ValueError(f"{name} has no pytest summary line")
    return float(found[-1])


def _listing(figures: list[str]) -> str:
    """'A, B and C', as the documents list figures."""
    return f"{', '.join(figures[:-1])} and {figures[-1]}"


def suite_runs(*names: str) -> str:
    """'A, B and C s (median M s)': the runs' wall times, as README and RESULTS print them."""
    times = [round(suite_seconds(n)) for n in names]
    return f"{_listing([str(t) for t in times])} s (median {round(median(times))} s)"


def suite_log(run: str) -> str:
    """The data file of one of 2026-12-06's suite runs, by its letter."""
    return f"suite-durations-2026-12-06{run}.txt"


def one_run(run: str) -> str:
    """How the documents cite a single suite run: 'took N s (`-06R.txt`'."""
    return f"took {round(suite_seconds(suite_log(run)))} s (`-06{run}.txt`"


def _durations(name: str) -> Iterator[tuple[float, str, str]]:
    """(seconds, phase, test node id) of each line of a suite run's `--durations=0` listing."""
    for line in (DATA / name).read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in ("setup", "call", "teardown") and parts[0].endswith("s"):
            yield float(parts[0].removesuffix("s")), parts[1], parts[2]


def test_seconds(name: str, test: str, phase: str = "call") -> float:
    """What one test (its node id) took in a suite run's `--durations=0` listing, in the phase given."""
    for seconds, listed_phase, node in _durations(name):
        if listed_phase == phase and node == test:
            return seconds
    raise ValueError(f"{name} lists no {phase} of {test}")


def file_seconds(name: str, path: str) -> float:
    """What one test file took in a suite run's listing: every phase of every test in it."""
    return sum(seconds for seconds, _, node in _durations(name) if node.split("::")[0] == path)


SUITE_BEFORE, SUITE_AFTER = "klmn", "opq"


def before_after(seconds: Callable[[str], float], digits: int = 2) -> str:
    """'A, B, C and D s before; E, F and G s after' over the suite runs before and after the second round of
    issue 28's changes, SECONDS giving one run's figure from its file name."""
    before = [f"{seconds(suite_log(r)):.{digits}f}" for r in SUITE_BEFORE]
    after = [f"{seconds(suite_log(r)):.{digits}f}" for r in SUITE_AFTER]
    return f"{_listing(before)} s before; {_listing(after)} s after"


FORK_RUNS = ("server-start-fork-2026-12-06.json", "server-start-fork-2026-12-06b.json")
PROBE_RUN = "probe-fork-2026-12-06.json"
FORK_FIGURES = (
    ("start", "ready_s", 3),
    *((model, m, 3 if m == "rss_mb" else 2) for model in ("tiny", "resnet") for m in FORK_TRIAL_METRICS),
)

RACE_SPACES = ("cpu8-mobilenet", "cpu16-resnet-variants", "cpu64-resnet", "gpu-t4-resnet")
HELD_OUT_SPACES = ("cpu32-mobilenet", "cpu32-resnet-variants")
LATE_SPACES = ("cpu12-mobilenet", "cpu24-mobilenet", "cpu24-resnet-variants", "cpu48-resnet")
# The race's entrants that search through autotune's Tuner (rerun when the tuner changed).
TUNER_ENTRANTS = ("autotune", "tpe-default", "tpe-multivariate", "nsga2")

# The batch op revision (validation-plan.md, "Addendum: the batch op's own CPU"): its held-out set, revision and
# ablation.
BATCH_OP_VALIDATIONS = (
    "validation-batch-op-mobilenet_float-2026-12-06.csv",
    "validation-batch-op-mobilenet_float-2026-12-06-noop.csv",
)
# Its replication over gRPC at 8 clients (validation-plan.md), checked with the rescored sets' five figures.
BATCH_OP_REPLICATION = (
    "validation-batch-op-grpc8-mobilenet_float-2026-12-06.csv",
    "validation-batch-op-grpc8-mobilenet_float-2026-12-06-noop.csv",
)
# The two earlier batching sets rescored post hoc with the batch op profile's figure.
BATCH_OP_RESCORED = (
    "validation-batches-mobilenet_float-2026-12-06-batchop.csv",
    "validation-tails-mobilenet_float-2026-12-06-batchop.csv",
)
# The revisions of 2026-12-06 (validation-plan.md, "Addendum: calls taken as Eigen's pool takes them", "Addendum:
# the transport's CPU where calls do not spin" and the batch op's): each held-out set with its revision and its
# ablation, then the committed files rescored with the first revision.
BATCHES_VALIDATIONS = (
    *BATCH_OP_VALIDATIONS,
    "validation-batches-mobilenet_float-2026-12-06.csv",
    "validation-batches-mobilenet_float-2026-12-06-cpu0.csv",
)
TAILS_VALIDATIONS = (
    *BATCHES_VALIDATIONS,
    "validation-tails-mobilenet_float-2026-12-06.csv",
    "validation-tails-mobilenet_float-2026-12-06-fifo.csv",
    "validation-mobilenet-grid-2026-12-04-eigen.csv",
    "validation-mobilenet-heldout-2026-12-04-eigen.csv",
    "validation-resnet-grid-2026-12-04-eigen.csv",
    "validation-mobilenet-cpu16-2026-12-04-eigen.csv",
    "validation-variants-mobilenet_float-2026-12-05-eigen.csv",
)

CLAIMS = (
    Claim(
        "repeatability, tiny", "trust-repeat-tiny-grpc-c8.json", lambda: f"tiny {cv('trust-repeat-tiny-grpc-c8.json')}"
    ),
    Claim(
        "repeatability, MobileNetV2",
        "trust-repeat-mobilenet-rest-c16.json",
        lambda: f"MobileNetV2 {cv('trust-repeat-mobilenet-rest-c16.json')}",
    ),
    Claim(
        "repeatability, ResNet50",
        "trust-repeat-resnet-rest-c8.json",
        lambda: f"ResNet50 {cv('trust-repeat-resnet-rest-c8.json')}",
    ),
    Claim("A/A, tiny", "trust-aa-tiny-grpc-c8.json", lambda: aa_significant("trust-aa-tiny-grpc-c8.json")),
    Claim("A/A, tiny, equivalence", "trust-aa-tiny-grpc-c8.json", lambda: aa_verdicts("trust-aa-tiny-grpc-c8.json")),
    Claim(
        "known effect, ResNet50",
        "trust-ab-resnet-rest-c8.json",
        lambda: known_effect("trust-ab-resnet-rest-c8.json"),
    ),
    Claim(
        "tuned MobileNetV2, throughput",
        "tuned-mobilenet.json",
        _tuned("tuned-mobilenet.json", "throughput_rps", "throughput "),
    ),
    Claim("tuned MobileNetV2, p99", "tuned-mobilenet.json", _tuned("tuned-mobilenet.json", "latency_p99_ms", "p99 ")),
    Claim("tuned ResNet50, p99", "tuned-resnet.json", _tuned("tuned-resnet.json", "latency_p99_ms")),
    Claim(
        "tuned ResNet50, throughput", "tuned-resnet.json", _tuned("tuned-resnet.json", "throughput_rps", "throughput ")
    ),
    Claim("tuned tiny, throughput", "tuned-tiny.json", _tuned("tuned-tiny.json", "throughput_rps", "throughput ")),
    Claim(
        "tuned tiny, the job's confirmation, throughput",
        "tuned-tiny.json",
        lambda: "throughput " + job_confirmation("tuned-tiny.json", "throughput_rps").replace(" (", " (95% CI "),
    ),
    Claim(
        "tuned tiny, the job's confirmation, p99",
        "tuned-tiny.json",
        lambda: "p99 " + job_confirmation("tuned-tiny.json", "latency_p99_ms"),
    ),
    Claim("tuned tiny, p99", "tuned-tiny.json", _tuned("tuned-tiny.json", "latency_p99_ms", "p99 ")),
    *(
        Claim(
            f"tuned {model} 2026-12-06, the job's confirmation, {label}",
            file,
            lambda f=file, m=metric, p=label: f"{p} " + job_confirmation(f, m),
        )
        for model, file in TUNED_RERUNS
        for metric, label in (("throughput_rps", "throughput"), ("latency_p99_ms", "p99"))
    ),
    *(
        Claim(
            f"tuned {model} 2026-12-06, compare, {label}",
            file,
            lambda f=file, m=metric, p=label: compared(f, m, f"{p} "),
        )
        for model, file in TUNED_RERUNS
        for metric, label in (("throughput_rps", "throughput"), ("latency_p99_ms", "p99"))
    ),
    Claim("cost, MobileNetV2", "cost-mobilenet.json", _tuned("cost-mobilenet.json", "cost_per_1k_requests", "", 3)),
    Claim("cost study p99", "cost-mobilenet.json", _tuned("cost-mobilenet.json", "latency_p99_ms", "p99 ")),
    Claim(
        "variants job, p99 ratio",
        "tuned-mobilenet_float-variants-relaxed.json",
        _tuned("tuned-mobilenet_float-variants-relaxed.json", "latency_p99_ms", "p99 "),
    ),
    *(
        Claim(f"model validation, {name}, {what}", name, lambda n=name, w=what: validation(n, w))
        for name in (
            "validation-mobilenet-grid-2026-12-04-preregistered.csv",
            "validation-mobilenet-grid-2026-12-04.csv",
            "validation-mobilenet-heldout-2026-12-04.csv",
            "validation-resnet-grid-2026-12-04.csv",
            "validation-mobilenet-grid-2026-12-04-cpuplan.csv",
            "validation-mobilenet-heldout-2026-12-04-cpuplan.csv",
            "validation-resnet-grid-2026-12-04-cpuplan.csv",
            "validation-mobilenet-cpu16-2026-12-04.csv",
            "validation-variants-mobilenet_float-2026-12-05.csv",
            "validation-variants-mobilenet_float-2026-12-05-savedmodel-transport.csv",
            *TAILS_VALIDATIONS,
        )
        for what in ("throughput", "p99", "spearman_throughput_rps")
    ),
    *(
        Claim(f"model validation, {name}, goodput", name, lambda n=name: validation(n, "spearman_goodput_rps"))
        for name in (n for n in TAILS_VALIDATIONS if "eigen" not in n or "cpu16" in n or "variants" in n)
    ),
    *(
        Claim(f"model validation, {name}, {what}", name, lambda n=name, w=what: validation(n, w))
        for name in BATCHES_VALIDATIONS
        for what in ("batch_size", "throughput_batched", "p99_batched")
    ),
    *(
        Claim(
            f"model validation, batch op (rescored or replicated), {name}, {what}",
            name,
            lambda n=name, w=what: validation(n, w),
        )
        for name in (*BATCH_OP_RESCORED, *BATCH_OP_REPLICATION)
        for what in ("throughput", "p99", "spearman_goodput_rps", "throughput_batched", "p99_batched")
    ),
    *(
        Claim(f"the batch op's CPU, profiled, {name}", name, lambda n=name: batch_op(n))
        for name in ("profile-mobilenet_float-2026-12-06c.json", "profile-mobilenet_float-2026-12-06e.json")
    ),
    *(
        Claim(
            f"calls beside, in-sample, {what}",
            "diagnosis-beside-insample-2026-12-06.txt",
            lambda w=what: beside_insample("diagnosis-beside-insample-2026-12-06.txt", w),
        )
        for what in ("mean", "median", "unbatched")
    ),
    *(
        Claim(
            f"calls side by side, {where}",
            "diagnosis-side-by-side-2026-12-06.txt",
            lambda w=where: side_by_side("diagnosis-side-by-side-2026-12-06.txt", w),
        )
        for where in ("round 1", "round 2", "in-process")
    ),
    Claim(
        "model validation, variants held out, goodput",
        "validation-variants-mobilenet_float-2026-12-05.csv",
        lambda: validation("validation-variants-mobilenet_float-2026-12-05.csv", "spearman_goodput_rps"),
    ),
    Claim(
        "model validation, 16 cores, goodput",
        "validation-mobilenet-cpu16-2026-12-04.csv",
        lambda: validation("validation-mobilenet-cpu16-2026-12-04.csv", "spearman_goodput_rps"),
    ),
    *(Claim(f"race, {space}", "search-at-scale.json", lambda sp=space: race(sp)) for space in RACE_SPACES),
    *(
        Claim(
            f"race, model-seeded, {space}",
            "search-at-scale-model-seeded.json",
            lambda sp=space: race(sp, "search-at-scale-model-seeded.json", seeded=True),
        )
        for space in RACE_SPACES
    ),
    *(
        Claim(
            f"race, model-seeded with distinct seeds, {space}",
            "search-at-scale-model-seeded-distinct.json",
            lambda sp=space: race_seeded_only(sp, "search-at-scale-model-seeded-distinct.json"),
        )
        for space in RACE_SPACES
    ),
    *(
        Claim(
            f"race, model-seeded with the whole-space screen, {space}",
            "search-at-scale-model-seeded-screen.json",
            lambda sp=space: race_seeded_only(sp, "search-at-scale-model-seeded-screen.json", "whole-space screen"),
        )
        for space in RACE_SPACES
    ),
    *(
        Claim(
            f"race rerun without repeats, {sampler}, {space}",
            "search-at-scale-no-repeats.json",
            lambda sp=space, s=sampler, b=before: race_rerun(sp, s, "search-at-scale-no-repeats.json", b),
        )
        for space in RACE_SPACES
        for sampler, before in (
            *((name, "search-at-scale-before-no-repeats.json") for name in TUNER_ENTRANTS),
            ("model-seeded", "search-at-scale-model-seeded-screen.json"),
        )
    ),
    *(
        Claim(f"race, robustness, {space}", file, lambda sp=space, f=file: median_holds(sp, f))
        for space, file in (
            ("cpu16-resnet-variants", "search-at-scale-model-seeded-screen.json"),
            ("cpu32-mobilenet", "search-at-scale-held-out.json"),
        )
    ),
    *(
        Claim(
            f"race, held-out host, {space}",
            "search-at-scale-held-out.json",
            lambda sp=space: race(sp, "search-at-scale-held-out.json", seeded=True),
        )
        for space in HELD_OUT_SPACES
    ),
    *(
        Claim(f"race, revised simulator, {space}", file, lambda sp=space, f=file: race(sp, f, seeded=True))
        for spaces, file in (
            (RACE_SPACES, "search-at-scale-2026-12-06.json"),
            (HELD_OUT_SPACES, "search-at-scale-held-out-2026-12-06.json"),
            (LATE_SPACES, "search-at-scale-late-before.json"),
        )
        for space in spaces
    ),
    *(
        Claim(
            f"race, guide's seeds after the model's, {space}",
            after,
            lambda sp=space, b=before, a=after: guide_after_model(sp, b, a),
        )
        for spaces, before, after in (
            (LATE_SPACES, "search-at-scale-late-before.json", "search-at-scale-late-after.json"),
            (RACE_SPACES, "search-at-scale-2026-12-06.json", "search-at-scale-guide-after-model-2026-12-06.json"),
            (
                HELD_OUT_SPACES,
                "search-at-scale-held-out-2026-12-06.json",
                "search-at-scale-held-out-guide-after-model-2026-12-06.json",
            ),
        )
        for space in spaces
    ),
    *(Claim(f"soak, {what}", f, lambda f=f, w=what: soak(f, w)) for f, whats in SOAKS.items() for what in whats),
    *(
        Claim(
            f"storage growth, {mode}",
            "storage-growth-2026-12-05.json",
            lambda m=mode: storage_growth("storage-growth-2026-12-05.json", m),
        )
        for mode in ("new", "shared")
    ),
    *(
        Claim(
            f"sessionmaker growth, {mode}",
            "storage-growth-2026-12-05.json",
            lambda m=mode: storage_growth("storage-growth-2026-12-05.json", m, "sessions_rss_mib"),
        )
        for mode in ("new", "shared")
    ),
    *(
        Claim(f"model-seeded jobs, live, {arm}, {name}", name, lambda a=arm, n=name: live_seeded(n, a))
        for name in (
            "model-seeded-live-mobilenet.json",
            "model-seeded-live-mobilenet-revised.json",
            "model-seeded-live-resnet.json",
            "model-seeded-live-mobilenet-distinct.json",
            "model-seeded-live-mobilenet-h2h.json",
        )
        for arm in ("model", "guide")
    ),
    *(
        Claim(
            f"model-seeded jobs, live, {arm}, the earlier rule beside the head-to-head",
            "model-seeded-live-mobilenet-h2h.json",
            lambda a=arm: live_seeded("model-seeded-live-mobilenet-h2h.json", a, "by_confirmation"),
        )
        for arm in ("model", "guide")
    ),
    *(
        Claim(
            f"page cache growth, {mode}",
            "pagecache-growth-2026-12-05.json",
            lambda m=mode: pagecache("pagecache-growth-2026-12-05.json", m),
        )
        for mode in ("default", "capped")
    ),
    *(
        Claim(
            f"forked against exec'd stand-in, {part} {metric}, {file}",
            file,
            lambda f=file, p=part, m=metric, d=digits: forked(f, p, m, d),
        )
        for file in FORK_RUNS
        for part, metric, digits in FORK_FIGURES
    ),
    Claim(
        "forked against exec'd stand-in, ResNet50 measuring time (the windows' share of the wall time)",
        FORK_RUNS[1],
        lambda: forked(FORK_RUNS[1], "resnet", "measure_s"),
    ),
    *(
        Claim(
            f"forked against exec'd profiling probes, {figure}", PROBE_RUN, lambda f=figure: forked_probes(PROBE_RUN, f)
        )
        for figure in ("wall", "cpu", "probe_s")
    ),
    Claim(
        "read-only command CPU",
        "cli-overhead.json",
        lambda: f"{median(_load('cli-overhead.json')['ours']['status --json']['cpu_s']):.2f} CPU-s",
    ),
    *(
        Claim(f"the suite, {what}", files[0], lambda files=files: suite_runs(*files))
        for what, files in (
            ("in the test process", tuple(map(suite_log, "klm"))),
            ("not slow, in the test process", tuple(f"suite-notslow-2026-12-06{r}.txt" for r in "klm")),
            ("with probes forked", tuple(map(suite_log, "ghi"))),
            ("with a replayed search", tuple(map(suite_log, SUITE_AFTER))),
            ("not slow, with a replayed search", tuple(f"suite-notslow-2026-12-06{r}.txt" for r in SUITE_AFTER)),
        )
    ),
    *(
        Claim(
            f"the suite, {test} before and after",
            suite_log("q"),
            lambda test=f"tests/{path}::{test}": before_after(lambda name: test_seconds(name, test)),
        )
        for path, test in (
            (
                "test_measurement.py",
                "test_a_finished_job_stores_its_front_with_the_confirmation_and_says_how_it_compares",
            ),
            ("test_daemon.py", "test_a_job_survives_sigterm_and_kill_9_of_its_daemons"),
            (
                "test_measurement.py",
                "test_compare_finds_a_config_that_waits_for_batches_that_never_fill_slower_than_the_defaults",
            ),
        )
    ),
    Claim("the suite, a fourth run on the final code, after the replayed search", suite_log("r"), lambda: one_run("r")),
    Claim(
        "the suite, test_daemon.py before and after",
        suite_log("q"),
        lambda: before_after(lambda name: file_seconds(name, "tests/test_daemon.py"), digits=1),
    ),
    Claim("the suite, a fourth run on the final code", suite_log("n"), lambda: one_run("n")),
    Claim("the suite, on the Intel Xeon VM, session 29", suite_log("s"), lambda: one_run("s")),
    Claim(
        "read-only command CPU with a daemon running",
        "cli-overhead-daemon.json",
        lambda: f"{median(_load('cli-overhead-daemon.json')['ours']['status --json']['cpu_s']):.2f} CPU-s",
    ),
)


def documents() -> str:
    """The documents' text with bold marks removed (a bold figure is the same figure)."""
    return "\n".join((ROOT / d).read_text().replace("**", "") for d in DOCS if (ROOT / d).exists())


def check(claims: tuple[Claim, ...] = CLAIMS) -> list[str]:
    """One line per claim whose data is missing or whose recomputed figure no document prints."""
    text, problems = documents(), []
    for claim in claims:
        if not (DATA / claim.data).exists():
            problems.append(f"{claim.what}: data file benchmarks/data/{claim.data} is missing")
            continue
        try:
            figure = claim.text()
        except (KeyError, ValueError, StopIteration) as exc:  # StopIteration: a row the file lacks
            problems.append(f"{claim.what}: cannot recompute from {claim.data}: {exc!r}")
            continue
        if figure not in text:
            problems.append(f"{claim.what}: recomputed '{figure}' from {claim.data}; no document prints it")
    return problems


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strict", action="store_true", help="also fail on figures with no data file")
    a = p.parse_args()
    problems = check()
    for line in problems:
        print(f"mismatch: {line}", file=sys.stderr)
    for line in NO_DATA:
        print(f"{'error' if a.strict else 'warning'}: no data file: {line}", file=sys.stderr)
    print(f"{len(CLAIMS) - len(problems)} of {len(CLAIMS)} headline figures recomputed from their data files")
    sys.exit(1 if problems or (a.strict and NO_DATA) else 0)


if __name__ == "__main__":
    main()
