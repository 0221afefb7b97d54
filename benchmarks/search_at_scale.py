"""The samplers raced on the performance model: simulated hosts of 8, 16 and 64 cores and a GPU, ~2,000 configs each.

No host we have can measure spaces this large, so the truth is the model's (autotune/perfmodel): every config of
each space is simulated once (fixed seed) into benchmarks/data/scale-truth-<space>.csv, whose `#` header says what
produced it (profile file and sha256, the simulator's sources' sha256, load, cores, curve, transport, requests); a
truth file is reused only while that header matches, else recomputed. The race then runs each sampler through
autotune's real Tuner (ask/tell, first configs, constraints), and each trial observes its config's truth times
exp(N(0, sigma)) on throughput and p99, sigma from our measured server-to-server CV per model
(benchmarks/data/trust-repeat-<model>-*.json).

Rules fixed before any race was run (not tuned afterwards):
- load: closed loop at concurrency min(2 x cores, 64); truth from 600 simulated requests per config, seed 0;
- transport: TF Serving is C++ (no GIL): the profile's measured REST transport with gil=False and
  client_cpu_ms=0 (the load generator is off-host);
- SLO: p99 <= 2 x the lowest p99 of any error-free config of the space (rounded to 3 significant digits);
  error rate <= 1% (max_enqueued_batches is fixed at 1000, so closed-loop loads are never rejected);
- goodput = true throughput if the config meets both on its truth, else 0; found the optimum = the first
  trial whose config's true goodput is >= 95% of the space's best; never found = censored at the budget (">N");
- hypervolume (throughput up, p99 down, reference (0 rps, SLO)) of the configs visited, on their truth,
  after 3%, 5% and 10% of the space, over the space's own;
- the GPU space is a DeviceCurve fitted to NVIDIA's published ResNet-50 (TF, FP32) latencies on a T4 (T4_SOURCE),
  not a measurement of ours; model variants enter one space only, as the SavedModel curve scaled by the live
  throughput ratio of benchmarks/data/variants-resnet_float-grpc-c4.json (labelled in the truth header; tflite_fp16
  only: int8's 3.7x would make the variant the whole answer, and its accuracy check on random weights proves
  nothing). The 16- and 64-core spaces rest on the profile's Amdahl extrapolation beyond the threads it measured.
The model-seeded entrant (issue 26), its rule fixed before it was first raced: a `seeds = "model"` job on the
space. Its model is never the truth: each config is simulated again (seed 1000 + the run's seed, plan.REQUESTS
requests, not the truth's seed 0 and 600), then its throughput and p99 are multiplied by exp(b + s * z), with
(b, s) the mean and SD of log(predicted / measured) of the performance model on the live grid of the space's
model (VALIDATION: what the model missed against real servers) and z one standard-normal draw per config, metric
and run seed. The job plans with plan.make_plan on that model, measures the defaults, then the planned front,
then autotune's sampler, and checks the model for drift as a job does. Its target: 95% of the optimum within 1% of
the space, on every space. Since 2026-12-05 the plan screens every config of the space (plan.SCREEN_REQUESTS
answers each, at least 4 per client), then simulates its 200 best in full; before, it simulated a sample of 200
seeded by the run's seed (search-at-scale-model-seeded.json, -distinct.json). HELD_OUT_SPACES check that change
on hosts first simulated after it.
Held out: the first configs of `autotune` (autotune/seeds.py) were written on 2-core grids of tiny, ResNet50 and
MobileNetV2 (benchmarks/data/grid-*.csv); none of these hosts or spaces was used to write them. One change came
from this benchmark's smoke runs (a 162-config subset of cpu8-mobilenet): seeds now read a 0 choice as TF does
(seeds.as_tf_reads), a bug fix with no figure fitted; `autotune-legacy-seeds` races the old rule beside it.

    python benchmarks/search_at_scale.py --truth-only                      # simulate missing truth files
    python benchmarks/search_at_scale.py --quick --json                    # 5 seeds, budget 5% of each space
    python benchmarks/search_at_scale.py --seeds 20 --candidates           # full: writes data/search-at-scale.json
    python benchmarks/search_at_scale.py --seeds 20 --only autotune,random,model-seeded \
        --out benchmarks/data/search-at-scale-model-seeded.json            # the model-seeded entrant (issue 26)
    python benchmarks/search_at_scale.py --seeds 20 --only model-seeded --out ... --plots /tmp/sas-plots \
        --spaces cpu32-mobilenet,cpu32-resnet-variants                     # the held-out hosts

--candidates also races variations of ours (CANDIDATES) to find out why it misses a target; the issue's figures
are those of `autotune` itself.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import glob
import hashlib
import json
import math
import multiprocessing
import re
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import optuna
from grid_file import read_grid
from search_efficiency import Draw, Point, hypervolume, trials_to

from autotune.knobs import SAVEDMODEL, ServingConfig, config_from_dict
from autotune.measure import MeasureSettings, TrialResult
from autotune.model_check import STORED
from autotune.models.resolve import ModelRef
from autotune.perfmodel.profile import CostCurve, DeviceCurve, Profile, Transport
from autotune.perfmodel.simulate import Load, simulate
from autotune.plan import REQUESTS, make_plan, predicted_metrics
from autotune.seeds import allowance_seeds, heuristic_seeds
from autotune.servers.backends import local_backend
from autotune.space import Dimension
from autotune.spec import Study
from autotune.tuner import Tuner

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
PLOTS = HERE / "plots"
TRUTH_FORMAT = 1
TRUTH_SEED = 0
TRUTH_REQUESTS = 600
MAX_ENQUEUED = 1000
MAX_ERROR_RATE = 0.01
SLO_FACTOR = 2.0
NEAR = 0.95
FRACTIONS = (0.03, 0.05, 0.10)
PROTOCOL = "rest"
METRICS = ("throughput_rps", "latency_p50_ms", "latency_p99_ms", "error_rate", "cpu_cores", "mean_batch_size")

# ResNet-50 v1.5, TensorFlow, FP32, 1x T4: average latency (ms) by batch size, as published.
T4_FP32_RESNET50 = ((1, 7.34), (2, 9.29), (4, 13.83), (8, 23.41), (16, 40.58), (32, 77.18), (64, 150.82), (128, 297.82))
T4_SOURCE = (
    "NVIDIA DeepLearningExamples TensorFlow/Classification/ConvNets/resnet50v1.5/README.md (commit 1d4211fe), "
    "'Inference performance: NVIDIA T4', FP32 average latency, batch 1-128; least-squares affine fit"
)
# The performance model's validation on each model's live 2-core grid: the model-seeded entrant's error.
VALIDATION = {
    "mobilenet": "validation-mobilenet-grid-2026-12-04.csv",
    "resnet": "validation-resnet-grid-2026-12-04.csv",
}
MODEL_SEED_BASE = 1000  # the seeding model's simulations: seeds 1000 + the run's, never the truth's 0
MODEL_SEEDED_TARGET = 0.01  # issue 26: 95% of the optimum within 1% of the space
HELD_OUT = (
    "first configs (autotune/seeds.py) were written on 2-core grids of tiny, ResNet50 and MobileNetV2 "
    "(benchmarks/data/grid-*.csv): these hosts and spaces are held out from them"
)


@dataclass(frozen=True)
class SpaceSpec:
    """One simulated host and the discrete space searched on it."""

    name: str
    model: str  # profile-<model>-*.json and trust-repeat-<model>-*.json
    cores: int
    concurrency: int
    device: str = ""  # "" for the host's CPUs, "t4" for T4_FP32_RESNET50
    variants: tuple[str, ...] = (SAVEDMODEL,)
    batch_sizes: tuple[int, ...] = (4, 8, 16, 32, 64)
    timeouts: tuple[int, ...] = (0, 1000, 10000)  # the guide's 0, then its 1-10 ms range
    batch_threads: tuple[int, ...] = ()
    threads: tuple[int, ...] = ()  # intra- and inter-op; 0 = TF picks (the schedulable cores)
    allowances: tuple[float, ...] = ()  # `cpus`; 0 = every core
    requests: int = TRUTH_REQUESTS
    profile_path: str = ""  # default: the newest benchmarks/data/profile-<model>-*.json


def host_spec(name: str, model: str, cores: int, **kw: Any) -> SpaceSpec:
    """A space on CORES: batch threads 1, C/4, C/2, C; op threads 0, 1, C/4, C/2; allowance C/2 or all."""
    q, h = max(cores // 4, 1), max(cores // 2, 1)
    return SpaceSpec(
        name=name,
        model=model,
        cores=cores,
        concurrency=min(2 * cores, 64),
        batch_threads=tuple(sorted({1, q, h, cores})),
        threads=tuple(sorted({0, 1, q, h})),
        allowances=(float(h), 0.0),
        **kw,
    )


SPACES = (
    host_spec("cpu8-mobilenet", "mobilenet", 8),
    host_spec("cpu16-resnet-variants", "resnet", 16, variants=(SAVEDMODEL, "tflite_fp16"), batch_sizes=(4, 16, 64)),
    host_spec("cpu64-resnet", "resnet", 64),
    host_spec("gpu-t4-resnet", "resnet", 8, device="t4"),
)
# Raced only when named (--spaces): hosts whose truth was first simulated after the plan's screen was written,
# so a change read off the four spaces above is checked on truth simulated after it (the needle is the same config).
HELD_OUT_SPACES = (
    host_spec("cpu32-mobilenet", "mobilenet", 32),
    host_spec("cpu32-resnet-variants", "resnet", 32, variants=(SAVEDMODEL, "tflite_fp16"), batch_sizes=(4, 16, 64)),
)
# Also raced only when named: hosts defined, and first simulated, after the race on the revised simulator, to score a
# change of the model-seeded job's first configs read off that race (validation-plan.md, "Addendum: the guide's
# seeds after the model's").
LATE_SPACES = (
    host_spec("cpu12-mobilenet", "mobilenet", 12),
    host_spec("cpu24-mobilenet", "mobilenet", 24),
    host_spec("cpu24-resnet-variants", "resnet", 24, variants=(SAVEDMODEL, "tflite_fp16"), batch_sizes=(4, 16, 64)),
    host_spec("cpu48-resnet", "resnet", 48),
)
ALL_SPACES = SPACES + HELD_OUT_SPACES + LATE_SPACES


# --- the space ----------------------------------------------------------------------------------------------


def key_of(config: ServingConfig) -> str:
    """A config's identity: its knobs as stored (batching knobs only with batching on)."""
    return json.dumps(config.to_dict(), sort_keys=True)


def configs_of(spec: SpaceSpec) -> list[ServingConfig]:
    """Every config of SPEC's space, unbatched and batched."""
    out = []
    for variant in spec.variants:
        for cpus in spec.allowances:
            for intra in spec.threads:
                for inter in spec.threads:
                    base = ServingConfig(
                        intra_op_threads=intra, inter_op_threads=inter, cpus=cpus, model_variant=variant
                    )
                    out.append(base)
                    out += [
                        replace(
                            base,
                            enable_batching=True,
                            max_batch_size=m,
                            batch_timeout_micros=t,
                            num_batch_threads=n,
                            max_enqueued_batches=MAX_ENQUEUED,
                        )
                        for m in spec.batch_sizes
                        for t in spec.timeouts
                        for n in spec.batch_threads
                    ]
    return out


def dimensions(spec: SpaceSpec) -> dict[str, Dimension]:
    """SPEC's space as the Tuner searches it: every knob a set of choices (the truth's ladders)."""
    dims = {
        "enable_batching": Dimension("enable_batching", choices=(False, True)),
        "max_batch_size": Dimension("max_batch_size", choices=spec.batch_sizes),
        "batch_timeout_micros": Dimension("batch_timeout_micros", choices=spec.timeouts),
        "num_batch_threads": Dimension("num_batch_threads", choices=spec.batch_threads),
        "max_enqueued_batches": Dimension("max_enqueued_batches", fixed=MAX_ENQUEUED),
        "intra_op_threads": Dimension("intra_op_threads", choices=spec.threads),
        "inter_op_threads": Dimension("inter_op_threads", choices=spec.threads),
        "cpus": Dimension("cpus", choices=spec.allowances),
    }
    if len(spec.variants) > 1:
        dims["model_variant"] = Dimension("model_variant", choices=spec.variants)
    return dims


# --- what the model is fed ----------------------------------------------------------------------------------


def profile_path(spec: SpaceSpec) -> Path:
    """The profile SPEC uses: its own, or the newest measured for its model on this 2-core host."""
    if spec.profile_path:
        return Path(spec.profile_path)
    # Dated names only: profile-<model>-cpu16-<date>.json and the like are other hosts' (the device runs).
    found = sorted(glob.glob(str(DATA / f"profile-{spec.model}-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9].json")))
    if not found:
        raise SystemExit(f"error: no benchmarks/data/profile-{spec.model}-*.json (run autotune profile first)")
    return Path(found[-1])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def t4_curve() -> DeviceCurve:
    """The T4's service curve: the published latencies fitted as fixed + per-item cost."""
    xs, ys = zip(*T4_FP32_RESNET50, strict=True)
    slope, fixed = np.polyfit(xs, ys, 1)
    return DeviceCurve(fixed_ms=float(fixed), per_item_ms=float(slope))


class ScaledCurve:
    """A variant's cost: the SavedModel's curve times one measured factor (threads and batching assumed alike)."""

    serial_device = False

    def __init__(self, base: CostCurve, factor: float) -> None:
        self.base, self.factor = base, factor

    def cost(self, batch: int, threads: int) -> tuple[float, float]:
        wall, cpu = self.base.cost(batch, threads)
        return wall * self.factor, cpu * self.factor

    def spread(self, batch: int, threads: int) -> float:
        return self.base.spread(batch, threads)


def variant_ratio(model: str, variant: str) -> tuple[float, str]:
    """The live throughput ratio VARIANT / SavedModel at TF Serving's defaults, and the file it comes from."""
    files = sorted(glob.glob(str(DATA / f"variants-{model}_float-*.json")))
    if not files:
        raise SystemExit(f"error: no benchmarks/data/variants-{model}_float-*.json for variant {variant}")
    doc = json.loads(Path(files[-1]).read_text())
    ratio = float(doc["variants"][variant]["compare"]["metrics"]["throughput_rps"]["ratio"])
    return ratio, Path(files[-1]).name


def transport_of(profile: Profile) -> Transport:
    """TF Serving's transport: the measured cost, without the stand-in's GIL or an on-host client."""
    return replace(profile.transport_for(PROTOCOL), gil=False, client_cpu_ms=0.0)


def curves(spec: SpaceSpec, profile: Profile) -> dict[str, CostCurve | DeviceCurve | ScaledCurve]:
    """The service curve of each variant SPEC searches."""
    if spec.device == "t4":
        return {v: t4_curve() for v in spec.variants}
    base = profile.curve(SAVEDMODEL)
    return {
        v: base if v == SAVEDMODEL else ScaledCurve(base, 1 / variant_ratio(spec.model, v)[0]) for v in spec.variants
    }


LADDERS = ("variants", "batch_sizes", "timeouts", "batch_threads", "threads", "allowances")


# The code that turns a profile and a config into a truth: another version of it is another truth.
SIMULATOR_SOURCES = ("autotune/perfmodel/simulate.py", "autotune/perfmodel/profile.py", "autotune/cpulimit.py")


def simulator_digest() -> str:
    """One sha256 over the simulator's sources (SIMULATOR_SOURCES)."""
    h = hashlib.sha256()
    for name in SIMULATOR_SOURCES:
        h.update((HERE.parent / name).read_bytes())
    return h.hexdigest()


def settings(spec: SpaceSpec) -> dict[str, str]:
    """What the truth of SPEC depends on: a truth file is reused only while its header says the same."""
    path = profile_path(spec)
    profile = Profile.from_json(json.loads(path.read_text()))
    t = transport_of(profile)
    out = {
        "format": str(TRUTH_FORMAT),
        "space": spec.name,
        "profile": path.name,
        "profile_sha256": sha256(path),
        "simulator_sha256": simulator_digest(),
        "cores": str(spec.cores),
        "load": f"closed loop, concurrency {spec.concurrency}",
        "requests": str(spec.requests),
        "seed": str(TRUTH_SEED),
        "transport": f"{PROTOCOL} measured: wall {t.wall_ms:.3f} ms, server CPU {t.server_cpu_ms:.3f} ms; "
        "gil=False, client_cpu_ms=0 (TF Serving is C++; the load generator is off-host)",
        "curve": f"T4 DeviceCurve {t4_curve()} from {T4_SOURCE}" if spec.device else f"profile {SAVEDMODEL} curve",
        "configs": str(len(configs_of(spec))),
        "space_knobs": json.dumps({k: list(getattr(spec, k)) for k in LADDERS}),
    }
    for v in spec.variants:
        if v != SAVEDMODEL and not spec.device:
            ratio, source = variant_ratio(spec.model, v)
            out[f"variant_{v}"] = (
                f"SavedModel curve x 1/{ratio:.3f}: the live throughput ratio at TF Serving's defaults "
                f"({source}, 2 cores); TFLite's thread and batch scaling NOT measured, assumed the SavedModel's"
            )
    return out


# --- truth --------------------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def simulation_inputs(spec: SpaceSpec) -> tuple[Profile, dict[str, Any], Transport]:
    """What simulating a config of SPEC takes: its profile, each variant's service curve, the transport."""
    profile = Profile.from_json(json.loads(profile_path(spec).read_text()))
    # TF Serving batches outside the graph (its BatchingSession): none of the stand-in's batch op to pay.
    profile = replace(profile, batch_op_cpu_ms=0.0)
    return profile, curves(spec, profile), transport_of(profile)


def _init_worker(spec: SpaceSpec) -> None:
    profile, by_variant, transport = simulation_inputs(spec)
    _WORKER.update(spec=spec, profile=profile, curves=by_variant, transport=transport)


def _simulate_key(key: str) -> dict[str, Any]:
    """One config's truth (runs in a worker set up by _init_worker)."""
    spec: SpaceSpec = _WORKER["spec"]
    config = config_from_dict(json.loads(key))
    p = simulate(
        _WORKER["profile"],
        config,
        Load(concurrency=spec.concurrency),
        cores=spec.cores,
        requests=spec.requests,
        seed=TRUTH_SEED,
        curve=_WORKER["curves"][config.model_variant],
        transport=_WORKER["transport"],
    )
    return {"key": key, **{m: getattr(p, m) for m in METRICS}}


def compute_truth(spec: SpaceSpec, processes: int = 2) -> list[dict[str, Any]]:
    """Simulate every config of SPEC once, over PROCESSES processes."""
    keys = [key_of(c) for c in configs_of(spec)]
    if processes <= 1:
        _init_worker(spec)
        return [_simulate_key(k) for k in keys]
    with multiprocessing.get_context("fork").Pool(processes, _init_worker, (spec,)) as pool:
        return pool.map(_simulate_key, keys, chunksize=16)


def truth_path(spec: SpaceSpec, data: Path | None = None) -> Path:
    return (data or DATA) / f"scale-truth-{spec.name}.csv"


def write_truth(path: Path, header: dict[str, str], rows: list[dict[str, Any]]) -> None:
    """The truth file: `# key: value` header (settings, command, date), then one row per config."""
    with path.open("w", newline="") as f:
        for k, v in header.items():
            f.write(f"# {k}: {v}\n")
        writer = csv.DictWriter(f, fieldnames=["key", *METRICS])
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def _digits(text: str) -> str:
    """TEXT with each decimal number to 10 significant digits: a least-squares fit's last bits differ between
    CPUs and numpy builds, and a truth file is not stale for that."""
    return re.sub(r"\d+\.\d+(?:e[-+]?\d+)?", lambda m: f"{float(m.group()):.10g}", text)


def read_truth(path: Path, want: dict[str, str]) -> list[dict[str, Any]] | None:
    """PATH's rows if its header matches WANT on every setting, else None (stale: recompute)."""
    if not path.is_file():
        return None
    header, rows = read_grid(path)
    if any(_digits(header.get(k) or "") != _digits(v) for k, v in want.items()):
        return None
    return [{"key": r["key"], **{m: float(r[m]) for m in METRICS}} for r in rows]


def ensure_truth(
    spec: SpaceSpec, data: Path | None = None, processes: int = 2, say: Callable[[str], None] = print
) -> list:
    """SPEC's truth: reused from its file when the header matches, else simulated and written."""
    want = settings(spec)
    path = truth_path(spec, data)
    rows = read_truth(path, want)
    if rows is not None:
        return rows
    say(f"{spec.name}: simulating {want['configs']} configs ({path.name} missing or stale) ...")
    started = time.monotonic()
    rows = compute_truth(spec, processes)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benchmarks/search_at_scale.py " + " ".join(sys.argv[1:])
    write_truth(path, {**want, "command": command, "date": stamp, "seconds": f"{time.monotonic() - started:.0f}"}, rows)
    say(f"{spec.name}: {len(rows)} configs in {time.monotonic() - started:.0f}s -> {path}")
    # Read back, so a race on fresh truth sees exactly the rounded figures a rerun reusing the file sees.
    fresh = read_truth(path, want)
    assert fresh is not None
    return fresh


# --- the race -----------------------------------------------------------------------------------------------


def noise_sigma(model: str) -> tuple[float, float, str]:
    """(sigma of log throughput, sigma of log p99, source) from the server-to-server CV of fresh servers."""
    files = sorted(glob.glob(str(DATA / f"trust-repeat-{model}-*.json")))
    if not files:
        raise SystemExit(f"error: no benchmarks/data/trust-repeat-{model}-*.json to take the noise from")
    runs = json.loads(Path(files[0]).read_text())["runs"]

    def sigma(metric: str) -> float:
        xs = [r[metric] for r in runs if r.get(metric) is not None]
        cv = statistics.stdev(xs) / statistics.mean(xs)
        return math.sqrt(math.log(1 + cv**2))  # a log-normal with this CV

    return sigma("throughput_rps"), sigma("latency_p99_ms"), Path(files[0]).name


@dataclass
class Space:
    """A space with its truth, SLO, optimum and noise: what a race is run and judged on."""

    spec: SpaceSpec
    points: dict[str, Point]
    slo_ms: float
    sigma: tuple[float, float]
    noise_source: str = ""
    best: float = field(init=False)
    front_hv: float = field(init=False)
    targets: set[Point] = field(init=False)

    def __post_init__(self) -> None:
        goodputs = {p: self.goodput(p) for p in self.points.values()}
        self.best = max(goodputs.values())
        self.targets = {p for p, g in goodputs.items() if g >= NEAR * self.best}
        self.front_hv = hypervolume(list(self.points.values()), self.slo_ms, MAX_ERROR_RATE)

    @property
    def size(self) -> int:
        return len(self.points)

    def goodput(self, p: Point) -> float:
        return p.goodput(self.slo_ms, MAX_ERROR_RATE)


def slo_rule(rows: list[dict[str, Any]]) -> float:
    """The SLO, fixed a priori: 2 x the lowest p99 of an error-free config, to 3 significant digits."""
    low = min(r["latency_p99_ms"] for r in rows if r["error_rate"] <= MAX_ERROR_RATE)
    slo = SLO_FACTOR * low
    return float(f"{slo:.3g}")


def build_space(spec: SpaceSpec, rows: list[dict[str, Any]]) -> Space:
    """The judged space from its truth rows."""
    points = {}
    for r in rows:
        config = config_from_dict(json.loads(r["key"]))
        draw = Draw(r["throughput_rps"], r["latency_p99_ms"], r["error_rate"], r["cpu_cores"], True, "")
        points[r["key"]] = Point(r["key"], config, (draw,))
    s_thr, s_p99, source = noise_sigma(spec.model)
    return Space(spec, points, slo_rule(rows), (s_thr, s_p99), source)


class Observer:
    """One run's measurements: truth times log-normal noise, in trial order, and the points visited."""

    def __init__(self, space: Space, seed: int) -> None:
        self.space = space
        self.rng = np.random.default_rng([seed, zlib.crc32(space.spec.name.encode())])
        self.visited: list[Point] = []

    def observe(self, config: ServingConfig) -> dict[str, Any]:
        p = self.space.points[key_of(config)]
        self.visited.append(p)
        d = p.draws[0]
        s_thr, s_p99 = self.space.sigma
        return {
            **d.metrics(),
            "throughput_rps": d.throughput_rps * math.exp(self.rng.normal(0, s_thr)),
            "latency_p99_ms": d.latency_p99_ms * math.exp(self.rng.normal(0, s_p99)),
        }

    def measure(self, config: ServingConfig, _say: object, _pid: object) -> TrialResult:
        return TrialResult("scale", "scale", "scale", config, [], self.observe(config), [], None)


SamplerMaker = Callable[[int], optuna.samplers.BaseSampler]


def legacy_seeds(space: dict[str, Dimension], cpus: int, concurrency: int | None) -> list[ServingConfig]:
    """Entrant: autotune's heuristic seeds as fitted before 2026-12-04, when a 0 choice was taken for 1e-9, not as
    TF reads it (seeds.as_tf_reads): "inter-op = cores" landed on cores/2 and "timeout 1 µs" on 1000 µs."""
    with mock.patch("autotune.seeds.as_tf_reads", lambda _name, value, _cpus: value):
        return heuristic_seeds(space, cpus, concurrency)


class LegacySeedTuner(Tuner):
    """Entrant: autotune's first configs with the seeds fitted by the old rule (legacy_seeds)."""

    def first_configs(self, previous: list[dict[str, Any]], budget: int) -> list[ServingConfig]:
        configs = [
            ServingConfig(),
            *allowance_seeds(self.space),
            *legacy_seeds(self.space, self.cpus, self.settings.concurrency),
        ]
        return [c for i, c in enumerate(configs) if c not in configs[:i]][:budget]


def race_study(space: Space, sampler: str, seed: int) -> Study:
    """The study every entrant runs on SPACE: its SLO and error bound, at the space's load."""
    spec = space.spec
    return Study(
        "scale",
        spec.model,
        slo_p99_ms=space.slo_ms,
        max_error_rate=MAX_ERROR_RATE,
        sampler=sampler,
        seed=seed,
        concurrency=spec.concurrency,
    )


def tuner_run(
    space: Space,
    study_sampler: str,
    make: SamplerMaker | None,
    seed: int,
    budget: int,
    tuner_cls: type[Tuner] = Tuner,
    planned: list[ServingConfig] | None = None,
    predict: Callable[[ServingConfig], dict[str, float]] | None = None,
) -> list[Point]:
    """Autotune's Tuner with STUDY_SAMPLER (its first configs) or a custom sampler MAKE(seed) on SPACE; PLANNED
    and PREDICT make it a model-seeded job's."""
    spec = space.spec
    obs = Observer(space, seed)
    study = race_study(space, study_sampler, seed)
    tuner = tuner_cls(
        study,
        ModelRef("scale", Path("."), 1, None),  # type: ignore[arg-type]
        local_backend(),
        dimensions(spec),
        MeasureSettings(concurrency=spec.concurrency, slo_ms=space.slo_ms),
        None,
        f"scale-{study_sampler}-{seed}",
        measure=obs.measure,
        cpus=spec.cores,
        planned=planned,
        predict=predict,
    )
    if make is not None:
        tuner.optuna.sampler = make(seed)
    tuner.run(budget, minutes=1e9)
    return obs.visited


def observed_goodput(space: Space, metrics: dict[str, Any]) -> float:
    """Goodput as the engineer sees it: the noisy draw against the SLO."""
    ok = metrics["latency_p99_ms"] <= space.slo_ms and metrics["error_rate"] <= MAX_ERROR_RATE
    return metrics["throughput_rps"] if ok else 0.0


def guide_run(space: Space, seed: int, budget: int) -> list[Point]:
    """TF Serving's batching guide followed by hand: its starting point, then its fixed tweaks, keeping the best
    observed at each step; it stops when the guide has nothing more to say.

    CPU ("CPU-only: One Approach"): num_batch_threads = cores, max_batch_size as large as allowed, timeout 0;
    then timeouts in the 1-10 ms range. GPU ("GPU: One Approach"): num_batch_threads = cores, timeout at its
    largest while max_batch_size is tuned (largest first), then the timeout lowered to rein in tail latency.
    Threads and allowance stay TF Serving's (0: TF picks; every core): the guides say nothing of them."""
    spec = space.spec
    obs = Observer(space, seed)
    seen: dict[ServingConfig, float] = {}

    def trial(config: ServingConfig) -> None:
        if config not in seen and len(obs.visited) < budget:
            seen[config] = observed_goodput(space, obs.observe(config))

    def best_of(cands: list[ServingConfig]) -> ServingConfig:
        return max((c for c in cands if c in seen), key=lambda c: seen[c])

    trial(ServingConfig())
    on = ServingConfig(
        enable_batching=True,
        num_batch_threads=spec.cores,
        max_batch_size=max(spec.batch_sizes),
        max_enqueued_batches=MAX_ENQUEUED,
    )
    if not spec.device:
        tries = [replace(on, batch_timeout_micros=t) for t in sorted(spec.timeouts)]
        for c in tries:
            trial(c)
        return obs.visited
    slow = replace(on, batch_timeout_micros=max(spec.timeouts))
    sizes = [replace(slow, max_batch_size=m) for m in sorted(spec.batch_sizes, reverse=True)]
    for c in sizes:
        trial(c)
    chosen = best_of(sizes)
    for t in sorted(spec.timeouts, reverse=True):
        trial(replace(chosen, batch_timeout_micros=t))
    return obs.visited


def model_error(model: str) -> dict[str, tuple[float, float]]:
    """The performance model's miss on MODEL's live grid, per metric: (mean, SD) of log(predicted / measured)."""
    _, rows = read_grid(DATA / VALIDATION[model])
    out = {}
    for metric, column in (("throughput_rps", "throughput_rps"), ("latency_p99_ms", "p99_ms")):
        logs = [math.log(float(r[f"predicted_{column}"]) / float(r[f"measured_{column}"])) for r in rows]
        out[metric] = (statistics.mean(logs), statistics.stdev(logs))
    return out


class SeedingModel:
    """What a model-seeded job on SPACE predicts in run SEED: the truth's simulation drawn again, each config's
    throughput and p99 then off by the model's measured error on live servers (the module's rule)."""

    def __init__(self, space: Space, seed: int) -> None:
        self.space, self.seed = space, seed
        self.profile, self.curves, self.transport = simulation_inputs(space.spec)
        self.error = model_error(space.spec.model)
        self.known: dict[tuple[str, int], dict[str, Any]] = {}

    def metrics(self, config: ServingConfig, requests: int = REQUESTS) -> dict[str, Any]:
        """CONFIG's predicted metrics from REQUESTS answers, as plan.make_plan takes them (the same answer every
        time it is asked; the error drawn once per config, whatever the answers)."""
        key = key_of(config)
        if (key, requests) not in self.known:
            spec = self.space.spec
            m = predicted_metrics(
                self.profile,
                config,
                Load(concurrency=spec.concurrency),
                PROTOCOL,
                spec.cores,
                requests,
                MODEL_SEED_BASE + self.seed,
                curve=self.curves[config.model_variant],
                transport=self.transport,
            )
            rng = np.random.default_rng([MODEL_SEED_BASE + self.seed, zlib.crc32(key.encode())])
            thr_bias, thr_sd = self.error["throughput_rps"]
            m["throughput_rps"] *= math.exp(thr_bias + thr_sd * rng.normal())
            p99_bias, p99_sd = self.error["latency_p99_ms"]
            off = math.exp(p99_bias + p99_sd * rng.normal())
            for q in ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms"):  # one tail, shifted as a whole
                m[q] *= off
            self.known[key, requests] = m
        return self.known[key, requests]

    def stored(self, config: ServingConfig) -> dict[str, float]:
        """What a model-seeded job stores beside each trial, and checks for drift."""
        m = self.metrics(config)
        return {k: float(m[k]) for k in STORED}


def model_seeded_run(space: Space, seed: int, budget: int) -> list[Point]:
    """Entrant (issue 26): a `seeds = "model"` job, its model the SeedingModel of this run."""
    model = SeedingModel(space, seed)
    study = race_study(space, "autotune", seed)
    plan = make_plan(
        model.profile, study, dimensions(space.spec), PROTOCOL, space.spec.cores, rng_seed=seed, predict=model.metrics
    )
    planned = [p.config for p in plan.seeds]
    return tuner_run(space, "autotune", None, seed, budget, planned=planned, predict=model.stored)


Runner = Callable[[Space, int, int], list[Point]]


def tuner_runner(study_sampler: str, make: SamplerMaker | None = None, tuner_cls: type[Tuner] = Tuner) -> Runner:
    return lambda space, seed, budget: tuner_run(space, study_sampler, make, seed, budget, tuner_cls)


# Variations of ours, raced beside it (--candidates) to find out why it misses, never to replace the benchmark:
# its sampler without its first configs; univariate TPE after them; its seeds fitted with 0 read as TF reads it.
CANDIDATES: dict[str, Runner] = {
    "autotune-no-seeds": tuner_runner("tpe"),
    "autotune-univariate": tuner_runner("autotune", lambda s: optuna.samplers.TPESampler(seed=s, n_startup_trials=5)),
    "autotune-legacy-seeds": tuner_runner("autotune", tuner_cls=LegacySeedTuner),
}


def samplers(candidates: bool = True) -> tuple[dict[str, Runner], list[str]]:
    """The raced strategies (and, with CANDIDATES, variations of ours), and notes on any left out."""
    out: dict[str, Runner] = {
        "autotune": tuner_runner("autotune"),
        "tpe-default": tuner_runner("tpe", lambda s: optuna.samplers.TPESampler(seed=s)),
        "tpe-multivariate": tuner_runner("tpe", lambda s: optuna.samplers.TPESampler(seed=s, multivariate=True)),
        "nsga2": tuner_runner("nsga2"),
        "random": tuner_runner("random"),
        "guide": guide_run,
        "model-seeded": model_seeded_run,
    }
    notes = []
    try:
        import torch  # noqa: F401

        out["gp"] = tuner_runner("tpe", lambda s: optuna.samplers.GPSampler(seed=s, warn_independent_sampling=False))
    except ImportError:
        notes.append("gp: skipped, torch is not importable here (Optuna's GPSampler needs it)")
    return ({**out, **CANDIDATES} if candidates else out), notes


# --- judging ------------------------------------------------------------------------------------------------


@dataclass
class Result:
    """One sampler on one space over all seeds."""

    counts: list[int]  # trials to 95% of the optimum; budget + 1 when never
    hv: dict[float, list[float]]  # fraction of the space -> hypervolume / the space's
    regret: list[list[float]]  # per seed: 1 - best true goodput so far / optimum, per trial

    def quartiles(self) -> tuple[float, float, float]:
        if len(self.counts) == 1:
            return (self.counts[0],) * 3  # type: ignore[return-value]
        q = statistics.quantiles(self.counts, n=4, method="inclusive")
        # The upper median: an even number of seeds never averages a found run with a censored one.
        return q[0], statistics.median_high(self.counts), q[2]


def judge(space: Space, runs: list[list[Point]], budget: int) -> Result:
    """Trials to 95%, hypervolume at each checkpoint within the budget and regret curves, on the truth."""
    res = Result([], {f: [] for f in FRACTIONS if math.ceil(f * space.size) <= budget}, [])
    for pts in runs:
        res.counts.append(trials_to(pts, space.targets, budget))
        for f in res.hv:
            k = math.ceil(f * space.size)
            res.hv[f].append(hypervolume(pts[:k], space.slo_ms, MAX_ERROR_RATE) / space.front_hv)
        so_far, curve = 0.0, []
        for p in pts:
            so_far = max(so_far, space.goodput(p))
            curve.append(1 - so_far / space.best)
        curve += [curve[-1] if curve else 1.0] * (budget - len(curve))
        res.regret.append(curve)
    return res


def fmt_count(x: float, budget: int) -> str:
    return f">{budget}" if x > budget else f"{x:g}"


# --- running ------------------------------------------------------------------------------------------------

_SPACES: dict[str, Space] = {}


def _race_init(spaces: dict[str, Space]) -> None:
    _SPACES.update(spaces)


def _race_job(job: tuple[str, str, int, int]) -> tuple[str, str, int, list[str], float]:
    """One (space, sampler, seed) run: the keys of the configs it visited, in order."""
    space_name, sampler, seed, budget = job
    started = time.monotonic()
    pts = samplers()[0][sampler](_SPACES[space_name], seed, budget)
    return space_name, sampler, seed, [p.key for p in pts], time.monotonic() - started


def race(
    spaces: dict[str, Space], names: list[str], seeds: list[int], budgets: dict[str, int], processes: int
) -> dict[str, dict[str, Result]]:
    """Every sampler on every space for every seed; judged per space and sampler."""
    jobs = [(s, n, seed, budgets[s]) for s in spaces for n in names for seed in seeds]
    if processes <= 1:
        _race_init(spaces)
        done = [_race_job(j) for j in jobs]
    else:
        with multiprocessing.get_context("fork").Pool(processes, _race_init, (spaces,)) as pool:
            done = pool.map(_race_job, jobs, chunksize=1)
    runs: dict[tuple[str, str], dict[int, list[Point]]] = {}
    for s, n, seed, keys, _ in done:
        runs.setdefault((s, n), {})[seed] = [spaces[s].points[k] for k in keys]
    return {s: {n: judge(spaces[s], [runs[(s, n)][seed] for seed in seeds], budgets[s]) for n in names} for s in spaces}


def summary(space: Space, results: dict[str, Result], budget: int) -> dict[str, Any]:
    """The figures of one space as JSON: per sampler the trials to 95% (median, IQR, misses), its ratio to random's,
    and hypervolume at each checkpoint."""
    rnd = results["random"].quartiles()[1] if "random" in results else None
    out: dict[str, Any] = {
        "size": space.size,
        "budget": budget,
        "slo_ms": space.slo_ms,
        "optimum_goodput_rps": round(space.best, 3),
        "optimum_configs": len(space.targets),
        "noise_sigma_log": {"throughput": round(space.sigma[0], 4), "p99": round(space.sigma[1], 4)},
        "noise_source": space.noise_source,
        "samplers": {},
    }
    for name, r in results.items():
        q1, med, q3 = r.quartiles()
        out["samplers"][name] = {
            "trials_to_95_median": fmt_count(med, budget),
            "trials_to_95_iqr": [fmt_count(q1, budget), fmt_count(q3, budget)],
            "censored": sum(c > budget for c in r.counts),
            "random_median": fmt_count(rnd, budget) if rnd is not None else None,
            "ratio_to_random": round(med / rnd, 3) if rnd else None,
            "ratio_is_bound": med > budget or (rnd is not None and rnd > budget),
            "hypervolume": {f"{int(f * 100)}%": round(statistics.median(v), 3) for f, v in r.hv.items()},
            "counts": r.counts,
        }
    out["targets"] = targets(space, results, budget)
    return out


def targets(space: Space, results: dict[str, Result], budget: int) -> dict[str, str]:
    """The issue's targets for our sampler on this space: met, missed, or not judged within the budget."""
    if "autotune" not in results:
        return {}
    r = results["autotune"]
    med = r.quartiles()[1]
    rnd = results["random"].quartiles()[1] if "random" in results else None
    limit = 0.03 * space.size
    hv5 = r.hv.get(0.05)
    out = {"95% within 3% of the space": "met" if med <= limit else "missed"}
    if rnd is None:
        out["<= 0.3x random"] = "n/a"
    elif rnd > budget:
        out["<= 0.3x random"] = "met (random censored)" if med <= 0.3 * budget else "not judged (random censored)"
    else:
        out["<= 0.3x random"] = "met" if med <= 0.3 * rnd else "missed"
    out["hypervolume >= 0.95 at 5%"] = "n/a" if hv5 is None else ("met" if statistics.median(hv5) >= 0.95 else "missed")
    if "model-seeded" in results:
        seeded = results["model-seeded"].quartiles()[1]
        met = seeded <= MODEL_SEEDED_TARGET * space.size
        out["model-seeded: 95% within 1% of the space"] = "met" if met else "missed"
    return out


def markdown(report: dict[str, Any], names: list[str]) -> list[str]:
    """The figures as a markdown table, one row per space and sampler."""
    lines = [
        "| space | configs | budget | sampler | trials to 95% median (IQR) | censored | random median | ratio | "
        "HV 3% | HV 5% | HV 10% |",
        "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s, doc in report["spaces"].items():
        for n in names:
            r = doc["samplers"][n]
            hv = r["hypervolume"]
            ratio = "" if r["ratio_to_random"] is None else f"{r['ratio_to_random']:.2f}"
            ratio += " (bound)" if r["ratio_is_bound"] and ratio else ""
            lines.append(
                f"| {s} | {doc['size']} | {doc['budget']} | {n} | {r['trials_to_95_median']} "
                f"({r['trials_to_95_iqr'][0]}-{r['trials_to_95_iqr'][1]}) | {r['censored']} | {r['random_median']} | "
                f"{ratio} | {hv.get('3%', '')} | {hv.get('5%', '')} | {hv.get('10%', '')} |"
            )
    return lines


def plot(space: Space, results: dict[str, Result], budget: int, out: Path) -> Path:
    """Regret (1 - best true goodput so far / optimum) against trials: median over seeds, IQR for ours and random."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    xs = np.arange(1, budget + 1)
    for i, (name, r) in enumerate(results.items()):
        arr = np.array(r.regret)
        q1, med, q3 = np.percentile(arr, [25, 50, 75], axis=0)
        ax.plot(xs, med, color=f"C{i}", label=name, linewidth=2.4 if name == "autotune" else 1.2)
        if name in ("autotune", "random"):
            ax.fill_between(xs, q1, q3, color=f"C{i}", alpha=0.15)
    ax.axhline(1 - NEAR, color="grey", linestyle=":", linewidth=1)
    for f in FRACTIONS:
        if f * space.size <= budget:
            ax.axvline(f * space.size, color="0.8", linewidth=0.8)
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_ylim(0, 1.05)
    ax.set_xlim(1, budget)
    ax.set_xlabel(f"trials (grey lines: 3/5/10% of {space.size} configs)")
    ax.set_ylabel("regret: 1 - best true goodput / optimum\n(median over seeds; IQR for autotune, random)")
    ax.set_title(f"{space.spec.name}: model only (simulated truth), SLO {space.slo_ms:g} ms")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / f"search_at_scale_{space.spec.name}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="5 seeds, budget 5%% of each space, no data file")
    p.add_argument("--seeds", type=int, help="seeds per sampler (default 20; --quick 5)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--budget", type=float, help="budget as a fraction of each space (default 0.10; --quick 0.05)")
    p.add_argument("--spaces", default="", help="comma-separated space names (default: all)")
    p.add_argument("--only", default="", help="comma-separated samplers (default: all)")
    p.add_argument("--candidates", action="store_true", help="also race variations of ours (CANDIDATES)")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--truth-only", action="store_true", help="simulate missing or stale truth files, then stop")
    p.add_argument("--json", action="store_true", help="the figures as JSON on stdout (the rest on stderr)")
    p.add_argument("--plots", type=Path, help="regret plots here (default: benchmarks/plots on a full run)")
    p.add_argument("--out", type=Path, default=DATA / "search-at-scale.json", help="the data file of a full run")
    a = p.parse_args()
    seeds = a.seeds or (5 if a.quick else 20)
    fraction = a.budget or (0.05 if a.quick else 0.10)
    log = (lambda s: print(s, file=sys.stderr)) if a.json else print
    named = a.spaces.split(",") if a.spaces else [s.name for s in SPACES]
    chosen = [s for s in ALL_SPACES if s.name in named]
    if not chosen:
        known = ", ".join(s.name for s in ALL_SPACES)
        raise SystemExit(f"error: no space among {a.spaces!r} (known: {known})")
    rows = {s.name: ensure_truth(s, processes=a.processes, say=log) for s in chosen}
    if a.truth_only:
        return
    spaces = {s.name: build_space(s, rows[s.name]) for s in chosen}
    runners, notes = samplers(a.candidates)
    names = [n for n in runners if not a.only or n in a.only.split(",")]
    for note in notes:
        log(note)
    budgets = {s: math.ceil(fraction * sp.size) for s, sp in spaces.items()}
    started = time.monotonic()
    results = race(spaces, names, list(range(a.first_seed, a.first_seed + seeds)), budgets, a.processes)
    report = {
        "provenance": _provenance(),
        "seeds": [a.first_seed, a.first_seed + seeds - 1],
        "budget_fraction": fraction,
        "held_out": HELD_OUT,
        "transport": "TF Serving is C++: the profile's REST transport, gil=False, client_cpu_ms=0 (off-host client)",
        "notes": [*notes, "guide: stops when the guide's sequence ends; a miss is censored at the budget"],
        "spaces": {s: summary(spaces[s], results[s], budgets[s]) for s in spaces},
        "seconds": round(time.monotonic() - started),
    }
    for s, doc in report["spaces"].items():
        log(f"{s}: {doc['size']} configs, SLO {doc['slo_ms']:g} ms, budget {doc['budget']}")
        for n, r in doc["samplers"].items():
            log(
                f"  {n:<17} trials-to-95% median {r['trials_to_95_median']!s:>6}  random {r['random_median']!s:>6}  "
                f"ratio {r['ratio_to_random']}{' (bound: censored)' if r['ratio_is_bound'] else ''}  size {doc['size']}"
            )
        log(f"  targets (autotune): {doc['targets']}")
    if a.plots or not a.quick:
        for s in spaces:
            plot(spaces[s], results[s], budgets[s], a.plots or PLOTS)
    if not a.quick:
        a.out.write_text(json.dumps(report, indent=1) + "\n")
    if a.json:
        print(json.dumps(report, indent=1))
    else:
        print("\n".join(["### Samplers raced on the performance model (model only)", "", *report["provenance"], ""]))
        print("\n".join(markdown(report, names)))


def _provenance() -> list[str]:
    from _common import provenance

    return provenance("search_at_scale.py")


if __name__ == "__main__":
    main()
