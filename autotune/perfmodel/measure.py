"""`autotune profile`: measure a model's batch costs with no server, and the transport's per-request cost.

Each intra-op thread count runs in its own process (TensorFlow fixes its thread pools at start-up); the
transport cost comes from two short trials per protocol against the stand-in (its wall time alone, its CPU under
load); the batch op's own cost per request, from one more process with no server.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotune.errors import AutotuneError
from autotune.fingerprint import fingerprint, host_info
from autotune.knobs import SAVEDMODEL, ServingConfig, is_tflite, schedulable_cpus
from autotune.models.content import content_hash
from autotune.models.resolve import ModelRef
from autotune.monitor import host_busy_seconds
from autotune.perfmodel.profile import BatchCost, CostCurve, Profile, Transport
from autotune.windows import WINDOW_DEFAULTS

if TYPE_CHECKING:
    from autotune.measure import MeasureSettings

# Powers of two and a few sizes between, so odd batch sizes interpolate over short spans.
BATCH_LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)
PROBE_TIMEOUT_S = 600.0
PROBE_MODULE = "autotune.perfmodel.probe"
# As the daemon's gate and record_grid.py: a probe that saw more foreign CPU than this is taken again (twice).
MAX_FOREIGN_CORES = 0.2
FOREIGN_RETRIES = 2
# The transport trials' windows as validated, at the jobs' own budget and above; a smaller budget asks for a
# quicker, rougher profile (the tests' least one) and shortens them in proportion, never below MIN_WINDOW_S.
TRANSPORT_WINDOW_S = 1.0
FULL_WINDOWS_BUDGET_S = 5.0
MIN_WINDOW_S = 0.25
# A rough profile's level also stops at this many windows and is not measured again when they disagree: short
# windows spread more, and a level that never settles still gives its throughput (all a transport figure reads).
ROUGH_MAX_WINDOWS = 6


def transport_window_s(budget_s: float) -> float:
    """How long the transport trials' windows are under a profile budget of BUDGET_S seconds."""
    return max(MIN_WINDOW_S, TRANSPORT_WINDOW_S * min(1.0, budget_s / FULL_WINDOWS_BUDGET_S))


def transport_settings(protocol: str, concurrency: int, budget_s: float) -> MeasureSettings:
    """How a transport trial at CONCURRENCY measures under a profile budget of BUDGET_S seconds: as validated from
    the jobs' own budget up, shorter and rougher below it."""
    from autotune.measure import MeasureSettings

    window_s = transport_window_s(budget_s)
    rough = budget_s < FULL_WINDOWS_BUDGET_S
    return MeasureSettings(
        protocol=protocol,
        concurrency=concurrency,
        window_s=window_s,
        warmup_s=min(0.5, window_s),
        measure_unloaded=False,
        min_requests=100,
        max_windows=ROUGH_MAX_WINDOWS if rough else WINDOW_DEFAULTS.max_windows,
        remeasure_unstable=not rough,
    )


def thread_counts(cpus: int) -> list[int]:
    """1, 2, 4, ... up to CPUS, and CPUS itself (TF's own pick when a thread knob is 0)."""
    counts, t = [], 1
    while t < cpus:
        counts.append(t)
        t *= 2
    return [*counts, cpus]


def children_cpu_s() -> float:
    """CPU seconds of this process's finished children, and the fork server's: its own (its TF import) and that of
    the children it forked for this process and reaped."""
    import resource

    from autotune.servers.prefork import fork_server_cpu_s

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + fork_server_cpu_s()


def _run(argv: list[str], what: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ARGV, a probe: forked from the fork server where it may be (no TF import to
    wait for), else exec'd."""
    from autotune.procs import kill_group
    from autotune.servers.prefork import ForkedProcess, forkable

    too_long = AutotuneError(f"{what} took over {PROBE_TIMEOUT_S:.0f} s")
    if not forkable(argv, os.environ, PROBE_MODULE):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise too_long from None
        return out.returncode, out.stdout, out.stderr
    with tempfile.TemporaryDirectory(prefix="autotune-probe-") as tmp:
        log, out_path = Path(tmp) / "stderr", Path(tmp) / "stdout"
        try:
            forked = ForkedProcess(argv, log, {**os.environ, "TMPDIR": tmp}, stdout_path=out_path)
        except (OSError, EOFError) as exc:  # the fork server could not start, or died
            raise AutotuneError(f"{what}: could not fork the probe: {exc}") from None
        try:
            code = forked.wait(PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise too_long from None
        finally:
            if forked.poll() is None:
                kill_group(forked)  # its session's every process, on every way out
        return code, out_path.read_text() if out_path.exists() else "", log.read_text() if log.exists() else ""


def _probe_doc(argv: list[str], what: str, failed: str) -> dict[str, Any]:
    """The JSON object a probe ARGV printed last; a one-line error (FAILED: its last words) when it printed none."""
    code, stdout, stderr = _run(argv, what)
    if code != 0 or not stdout.strip():
        last = (stderr.strip().splitlines() or [f"exit code {code} and no output"])[-1]
        raise AutotuneError(f"{failed}: {last}")
    return json.loads(stdout.strip().splitlines()[-1])


def probe(
    model: ModelRef,
    threads: int,
    batches: list[int],
    repeats: int,
    budget_s: float,
    inter_op: int = 1,
    variant: str = SAVEDMODEL,
) -> tuple[list[BatchCost], float]:
    """Batch costs of VARIANT (MODEL is its base) at THREADS intra-op threads, measured in a fresh process, and
    the cores other processes used meanwhile (a busy host slows a multi-threaded call more than its share)."""
    wall0, busy0, own0 = time.monotonic(), host_busy_seconds(), children_cpu_s()
    argv = [
        sys.executable,
        "-m",
        PROBE_MODULE,
        str(model.base_path),
        model.signature.name,
        str(threads),
        ",".join(map(str, batches)),
        str(repeats),
        str(budget_s),
        str(inter_op),
        "1" if is_tflite(variant) else "0",
    ]
    doc = _probe_doc(
        argv, f"profiling {model.name} at {threads} threads", f"profiling {model.name} failed at {threads} threads"
    )
    foreign = ((host_busy_seconds() - busy0) - (children_cpu_s() - own0)) / max(time.monotonic() - wall0, 1e-9)
    return [
        BatchCost(
            variant,
            threads,
            p["batch"],
            p["wall_ms"],
            tuple(p["wall_ci95_ms"]),
            p["cpu_ms"],
            p["repeats"],
            p["wall_sd_log"],
        )
        for p in doc["points"]
    ], max(foreign, 0.0)


def batch_op_cost(model: ModelRef, budget_s: float) -> tuple[float, tuple[float, float]]:
    """The stand-in's batch op: CPU per batched request beyond its share of a direct call, and its 95% interval,
    measured in a fresh process (probe --batch-op) within about BUDGET_S seconds."""
    argv = [sys.executable, "-m", PROBE_MODULE, "--batch-op", str(model.base_path), model.signature.name, str(budget_s)]
    what = f"profiling {model.name}'s batch op"
    doc = _probe_doc(argv, what, f"{what} failed")
    return float(doc["batch_op_cpu_ms"]), (float(doc["ci95_ms"][0]), float(doc["ci95_ms"][1]))


# Transport CPU is read where the server is busy: at concurrency 1 its idle threads poll and spin, and CPU
# per request there counts the idling. This load is not one the committed grids were measured at (8, 16).
CPU_PROBE_CONCURRENCY = 4
# ...and where calls do not spin: TF's default pools (every core) spin idle threads around each call, so a call
# alone burns more CPU than the same call under load, and the defaults' residual came out below 0 (clamped) on 16
# cores and on 2 (validation-plan.md, "Addendum: the transport's CPU where calls do not spin").
LONE_CALL = ServingConfig(intra_op_threads=1, inter_op_threads=1)


def _trial_metrics(
    model: ModelRef, protocol: str, concurrency: int, budget_s: float, config: ServingConfig
) -> dict[str, float]:
    """Metrics of one trial of CONFIG on the stand-in at CONCURRENCY."""
    from autotune.measure import run_trial
    from autotune.servers.backends import resolve_backend

    settings = transport_settings(protocol, concurrency, budget_s)
    result = run_trial(model, config, settings, resolve_backend("local", check=False))
    if not result.ok or not result.metrics.get("throughput_rps"):
        failed = result.failure_message or "no throughput"
        raise AutotuneError(f"measuring the {protocol} transport of {config.model_variant} failed: {failed}")
    return result.metrics


def transport_cost(
    model: ModelRef,
    protocol: str,
    model_cost: tuple[float, float],
    lone_cpu_ms: float,
    budget_s: float,
    variant: str = SAVEDMODEL,
) -> Transport:
    """The per-request cost outside the model, on the stand-in serving VARIANT: the wall time at concurrency 1 under
    TF Serving's defaults less MODEL_COST (wall ms, CPU ms of their batch-1 call), and the CPU under load with one
    call at a time on one thread less LONE_CPU_MS (that call's CPU)."""
    idle = _trial_metrics(model, protocol, 1, budget_s, ServingConfig(model_variant=variant))
    lone = replace(LONE_CALL, model_variant=variant)
    busy = _trial_metrics(model, protocol, CPU_PROBE_CONCURRENCY, budget_s, lone)
    per_request_ms = 1000.0 / idle["throughput_rps"]  # closed loop at concurrency 1: one request at a time
    busy_ms = 1000.0 / busy["throughput_rps"]
    return Transport(
        protocol=protocol,
        wall_ms=max(per_request_ms - model_cost[0], 0.0),
        server_cpu_ms=max(busy_ms * (busy.get("cpu_cores") or 0.0) - lone_cpu_ms, 0.0),
        client_cpu_ms=busy_ms * (busy.get("client_cpu_cores") or 0.0),
        gil=True,
        variant=variant,
    )


def variant_transports(
    model: ModelRef,
    points: list[BatchCost],
    protocols: tuple[str, ...],
    cpus: int,
    say: Callable[[str], None],
    budget_s: float = FULL_WINDOWS_BUDGET_S,
) -> list[Transport]:
    """Each protocol's transport while each variant in POINTS serves, less that variant's own batch-1 call as
    TF Serving's defaults run it (CPUS intra-op threads; a TFLite variant has its one measured count). One that
    cannot be measured is said and left out: the variant is then predicted with the SavedModel's."""
    out = []
    for name in sorted({p.variant for p in points} - {SAVEDMODEL}):
        curve = CostCurve([p for p in points if p.variant == name])
        call, lone = curve.cost(1, cpus), curve.cost(1, 1)
        for protocol in protocols:
            try:
                t = transport_cost(model, protocol, call, lone[1], budget_s, variant=name)
            except AutotuneError as exc:
                say(f"{exc}; {name} is predicted with the SavedModel's {protocol} transport")
                continue
            say(f"{protocol} serving {name}: {t.wall_ms:.2f} ms outside the model, {t.server_cpu_ms:.2f} ms server CPU")
            out.append(t)
    return out


def _quiet_probe(
    model: ModelRef,
    threads: int,
    batches: list[int],
    repeats: int,
    budget_s: float,
    say: Callable[[str], None],
    variant: str = SAVEDMODEL,
) -> tuple[list[BatchCost], float]:
    """probe(), taken again (at most FOREIGN_RETRIES times) while other processes used the host."""
    for _ in range(FOREIGN_RETRIES + 1):
        got, foreign = probe(model, threads, batches, repeats, budget_s, variant=variant)
        if foreign <= MAX_FOREIGN_CORES:
            break
        say(f"{variant} at {threads} thread(s): {foreign:.2f} cores used by other processes; measuring again")
    say(f"{variant} at {threads} thread(s): " + ", ".join(f"b{p.batch} {p.wall_ms:.1f} ms" for p in got))
    return got, foreign


def variant_costs(
    model: ModelRef,
    name: str,
    batches: list[int],
    repeats: int,
    budget_s: float,
    cpus: int,
    say: Callable[[str], None],
) -> tuple[list[BatchCost], dict[str, Any]]:
    """VARIANT NAME of MODEL built and checked as a trial would (cached in $AUTOTUNE_HOME/variants), its batch
    costs, and its accuracy figures; a variant that cannot be built has no costs and says why."""
    from autotune.models.optimize import checked_variant

    try:
        checked = checked_variant(model, name, min_top1=None)
    except AutotuneError as exc:
        say(f"{name}: not profiled: {exc}")
        return [], {"failed": str(exc)}
    base = replace(model, base_path=checked.variant.base)
    # A TFLite interpreter keeps its own thread default: TF Serving's intra-op knob does not reach it.
    counts = [1] if is_tflite(name) else thread_counts(cpus)
    points: list[BatchCost] = []
    for threads in counts:
        points += _quiet_probe(base, threads, batches, repeats, budget_s, say, name)[0]
    return points, checked.accuracy.to_json()


def measure_profile(
    model: ModelRef,
    max_batch: int = 64,
    repeats: int = 7,
    budget_s: float = 20.0,
    protocols: tuple[str, ...] = ("rest", "grpc"),
    say: Callable[[str], None] | None = None,
    variants: tuple[str, ...] = (),
) -> Profile:
    """Profile MODEL on this host: every thread count's batch ladder up to MAX_BATCH, then each of VARIANTS',
    then the transports. BUDGET_S bounds the repeats of one thread count's ladder (each point keeps at least 3)."""
    say = say or (lambda _m: None)
    started = time.monotonic()
    cpus = schedulable_cpus()
    batches = ladder(max_batch)
    points: list[BatchCost] = []
    foreign: dict[int, float] = {}
    for threads in thread_counts(cpus):
        got, foreign[threads] = _quiet_probe(model, threads, batches, repeats, budget_s, say)
        points += got
    accuracy: dict[str, dict[str, Any]] = {}
    for name in variants:
        got, accuracy[name] = variant_costs(model, name, batches, repeats, budget_s, cpus, say)
        points += got
    # The transport's wall time is what a request costs beyond the model's own call as TF Serving's defaults run it
    # (every core for intra- and inter-op threads: inter-op threads speed a single call too, 10% on MobileNetV2
    # here); its CPU is what it costs beyond one call on one thread (LONE_CALL), where nothing spins.
    (default,), _ = probe(model, cpus, [1], repeats, budget_s / 4, inter_op=cpus)
    lone_cpu_ms = CostCurve([p for p in points if p.variant == SAVEDMODEL]).cost(1, 1)[1]
    transport: list[Transport] = []
    for protocol in protocols:
        t = transport_cost(model, protocol, (default.wall_ms, default.cpu_ms), lone_cpu_ms, budget_s)
        say(f"{protocol}: {t.wall_ms:.2f} ms a request outside the model")
        transport.append(t)
    transport += variant_transports(model, points, protocols, cpus, say, budget_s)
    batch_op_ms, batch_op_ci = batch_op_cost(model, budget_s)
    say(f"batch op: {batch_op_ms:.2f} ms of CPU a batched request (95% CI {batch_op_ci[0]:.2f}-{batch_op_ci[1]:.2f})")
    info = host_info()
    return Profile(
        model=model.name,
        content_hash=content_hash(model.version_path),
        host_fingerprint=fingerprint(info),
        cpus=cpus,
        points=tuple(points),
        transport=tuple(transport),
        host=info,
        measured_at=now_utc(),
        seconds=round(time.monotonic() - started, 1),
        foreign_cores={str(t): round(f, 3) for t, f in foreign.items()},
        accuracy=accuracy,
        batch_op_cpu_ms=batch_op_ms,
        batch_op_ci95_ms=batch_op_ci,
    )


def ladder(max_batch: int) -> list[int]:
    """The batch sizes measured: BATCH_LADDER up to MAX_BATCH, and MAX_BATCH itself."""
    batches = [b for b in BATCH_LADDER if b <= max_batch]
    return batches if max_batch in batches else [*batches, max_batch]


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def add_variants(
    profile: Profile,
    model: ModelRef,
    variants: tuple[str, ...],
    max_batch: int = 64,
    repeats: int = 7,
    budget_s: float = 20.0,
    say: Callable[[str], None] | None = None,
) -> Profile:
    """PROFILE with VARIANTS it lacks measured and added (a cached profile asked for more variants)."""
    say = say or (lambda _m: None)
    started = time.monotonic()
    points, accuracy = list(profile.points), dict(profile.accuracy)
    added: list[BatchCost] = [p for p in points if profile.lacks_transport(p.variant)]  # profiled before transports
    for name in variants:
        if name not in accuracy:
            got, accuracy[name] = variant_costs(model, name, ladder(max_batch), repeats, budget_s, profile.cpus, say)
            points += got
            added += got
    protocols = tuple(sorted({t.protocol for t in profile.transport}))
    transport = (*profile.transport, *variant_transports(model, added, protocols, profile.cpus, say, budget_s))
    spent = round(profile.seconds + time.monotonic() - started, 1)
    return replace(profile, points=tuple(points), accuracy=accuracy, transport=transport, seconds=spent)


def stored_profile(
    model: ModelRef,
    host_fingerprint: str,
    url: str | None = None,
    protocols: tuple[str, ...] = ("rest", "grpc"),
    variants: tuple[str, ...] = (),
    say: Callable[[str], None] | None = None,
    refresh: bool = False,
    max_batch: int = 64,
    budget_s: float = 20.0,
) -> tuple[Profile, bool]:
    """MODEL's profile on this host from the store at URL: measured and stored when there is none (or REFRESH),
    grown by the VARIANTS it lacks; and whether the stored one served as it was."""
    from autotune.store.profiles import Profiles

    store, digest = Profiles(url), content_hash(model.version_path)
    doc = None if refresh else store.get(digest, host_fingerprint)
    say = say or (lambda _m: None)
    if doc is None:
        say(f"measuring {model.name}'s profile on this host (no server; a few minutes, once)")
        profile = measure_profile(model, max_batch, budget_s=budget_s, protocols=protocols, say=say, variants=variants)
    else:
        profile = Profile.from_json(doc)
        lacking = any(profile.lacks_transport(v) for v in profile.variants())
        lacking = lacking or not all(v in profile.accuracy for v in variants)
        no_batch_op = profile.batch_op_ci95_ms is None  # stored before the batch op was measured
        if not lacking and not no_batch_op:
            return profile, True
        if no_batch_op:
            say(f"measuring the batch op {model.name}'s profile lacks")
            ms, ci = batch_op_cost(model, budget_s)
            profile = replace(profile, batch_op_cpu_ms=ms, batch_op_ci95_ms=ci)
        if lacking:
            say(f"measuring the variants {model.name}'s profile lacks")
            profile = add_variants(profile, model, variants, max_batch, budget_s=budget_s, say=say)
    store.put(digest, host_fingerprint, model.name, profile.to_json())
    return profile, False
