"""The `autotune` command line: parse, validate, call one function, print the result.

Every command that prints a result takes `--json`; with it, errors are JSON too
(`{"error": "..."}` on stdout, same exit codes). Options shared by several
commands are declared once below. Heavy imports (TensorFlow, Optuna, plotting)
happen inside the commands that need them, so read-only commands stay light.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autotune import __version__, notes, tables
from autotune.errors import AutotuneError
from autotune.outdir import EXPORT_FORMATS
from autotune.servers.names import BACKEND_NAMES
from autotune.states import FailureReason, JobState, TrialState
from autotune.windows import WINDOW_DEFAULTS, WindowOptions

if TYPE_CHECKING:  # read-only commands stay light: the study module loads when a command needs it
    from autotune.spec import Study

_SETTINGS = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    name="autotune",
    help="Measure and tune TensorFlow Serving on this machine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings=_SETTINGS,
)
models_app = typer.Typer(help="Built-in models (random weights, real architectures).", no_args_is_help=True)
app.add_typer(models_app, name="models")
db_app = typer.Typer(help="The results database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
schedule_app = typer.Typer(help="Nightly (or any cron) retunes run by the daemon.", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")
cron_app = typer.Typer(help="Retunes from the system's cron instead of the daemon's schedules.", no_args_is_help=True)
app.add_typer(cron_app, name="cron")

out, err = tables.out, tables.err

EXIT_USER_ERROR = 1
EXIT_TRIAL_FAILED = 3
EXIT_INTERRUPTED = 130


class Protocol(StrEnum):
    rest = "rest"
    grpc = "grpc"


BackendName = StrEnum("BackendName", {n: n for n in BACKEND_NAMES})  # type: ignore[misc]
ExportFormat = StrEnum("ExportFormat", {n: n for n in EXPORT_FORMATS})  # type: ignore[misc]

# Options shared by several commands, each declared once.
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="built-in name or SavedModel base directory")]
TunedModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="model name as tuned (its latest job on this host)")
]
JobOpt = Annotated[int | None, typer.Option("--job", help="this job instead of the model's latest on this host")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON (errors too)")]
# A job's study: a model's (studies/NAME.toml or the defaults) or a study file; exactly one (study_of).
StudyModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="built-in name or SavedModel path")]
StudyFileOpt = Annotated[Path | None, typer.Option("--study", help="a study file (TOML)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="knob=value (repeatable)")]
ConcurrencyOpt = Annotated[int | None, typer.Option(help="fixed closed-loop clients")]
RateOpt = Annotated[float | None, typer.Option(help="open-loop Poisson arrivals per second")]
ProtocolOpt = Annotated[Protocol, typer.Option(help="rest or grpc")]
ServerBinaryOpt = Annotated[str | None, typer.Option(help="path to tensorflow_model_server")]
DockerImageOpt = Annotated[str | None, typer.Option(help="image for --backend docker")]
SignatureOpt = Annotated[str, typer.Option(help="signature to call")]
WindowSOpt = Annotated[float | None, typer.Option(help=WindowOptions.help("window_s"))]
WarmupSOpt = Annotated[float | None, typer.Option(help=WindowOptions.help("warmup_s"))]
MaxWindowsOpt = Annotated[int | None, typer.Option(help=WindowOptions.help("max_windows"))]
RequestsOpt = Annotated[
    Path | None,
    typer.Option(
        "--requests", help="replay this request file: JSON lines of REST bodies, or a TFRecord of PredictionLog"
    ),
]
BatchOpt = Annotated[int | None, typer.Option(help="instances per request (client-side batching; default 1)")]
TargetOpt = Annotated[
    str | None,
    typer.Option(help="measure the TF Serving already running here (its REST URL, http://HOST:PORT); start nothing"),
]
TargetGrpcOpt = Annotated[str | None, typer.Option(help="--target's gRPC HOST:PORT (for --protocol grpc)")]
AllowRemoteOpt = Annotated[
    list[str] | None, typer.Option(help="a non-loopback --target host you name explicitly (repeatable)")
]
TrialsOpt = Annotated[int | None, typer.Option(help="trial budget (default: the study's)")]
MinutesOpt = Annotated[float | None, typer.Option(help="time budget (default: the study's)")]
OutDirOpt = Annotated[Path, typer.Option("--out", help="directory to write")]
ForceOpt = Annotated[bool, typer.Option(help="replace a non-empty directory")]


def emit(as_json: bool, doc: Any, human: Callable[[], None] | str | None = None) -> None:
    """The one way a command prints its result: DOC as JSON under --json, else HUMAN (a line or a printer)."""
    if as_json:
        print(json.dumps(doc, indent=2, default=str))
    elif callable(human):
        human()
    elif human is not None:
        out.print(human, markup=False, highlight=False)


def _version(value: bool) -> None:
    if value:
        print(f"autotune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="no notes on stderr (which backend, what runs); warnings and errors stay")
    ] = False,
    plain: Annotated[bool, typer.Option("--plain", help="print tables as tab-separated values")] = False,
) -> None:
    """Measure and tune TensorFlow Serving on this machine."""
    notes.QUIET, tables.PLAIN = quiet, plain


# Root options a user types after the command too (`autotune bench ... --quiet`): main() moves them first.
_ANYWHERE = ("--quiet", "--plain")


def _hoisted(argv: list[str]) -> list[str]:
    """ARGV with --quiet and --plain moved before the command (never past a `--`)."""
    end = argv.index("--") if "--" in argv else len(argv)
    flags = [a for a in argv[:end] if a in _ANYWHERE]
    return [*flags, *(a for a in argv[:end] if a not in _ANYWHERE), *argv[end:]]


def _import_tensorflow() -> None:
    # Muted, once, before anything else touches it. Only `models build` needs TensorFlow here: the rest of
    # the CLI and the daemon read signatures and build requests with autotune/tfwire.py.
    from autotune.tfimport import import_tensorflow

    import_tensorflow()


def _here() -> str:
    """This host's fingerprint: jobs are picked among this host's unless an id names another's."""
    from autotune.fingerprint import fingerprint, host_info

    return fingerprint(host_info())


def _pick_job(model: str | None, job_id: int | None) -> Any:
    from autotune.models.resolve import served_name
    from autotune.store import Store

    return Store().pick_job(served_name(model) if model else None, job_id, _here())


@models_app.command("build")
def models_build(
    name: Annotated[str, typer.Argument(help="resnet, mobilenet or tiny")],
    out_dir: Annotated[Path, typer.Option("--out", help="base directory; the model goes to OUT/1")],
    as_json: JsonOpt = False,
) -> None:
    """Write a built-in model as a SavedModel in TF Serving's layout (OUT/1/saved_model.pb)."""
    _import_tensorflow()
    from autotune.models.builtin import build

    path = build(name, out_dir)
    emit(as_json, {"model": name, "path": str(path)}, f"wrote {name} to {path}")


@models_app.command("optimize")
def models_optimize(
    model: Annotated[str, typer.Argument(help="built-in name or SavedModel base directory")],
    out_dir: Annotated[Path, typer.Option("--out", help="directory for the variants (OUT/VARIANT/VERSION)")],
    variant: Annotated[
        list[str] | None, typer.Option(help="tflite_fp16, tflite_int8 or xla (repeatable; default all)")
    ] = None,
    requests_file: Annotated[
        Path | None,
        typer.Option("--requests", help="inputs for the accuracy check (and int8 calibration): a request file"),
    ] = None,
    samples: Annotated[int, typer.Option(help="synthetic inputs for the accuracy check without --requests")] = 128,
    min_top1_agreement: Annotated[float, typer.Option(help="the guard: share of inputs given the same class")] = 0.99,
    max_abs_error: Annotated[float | None, typer.Option(help="the guard for regressions: largest error")] = None,
    signature: SignatureOpt = "serving_default",
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Build a model's variants (TFLite where --prefer_tflite_model finds it, the SavedModel XLA-compiled) and check
    each one's answers against the original's."""
    from autotune.models.optimize import optimize
    from autotune.models.resolve import resolve_model
    from autotune.models.variants import VARIANTS
    from autotune.outdir import check_out_dir

    chosen = variant or list(VARIANTS)
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        raise AutotuneError(f"--variant {unknown[0]}: unknown (known: {', '.join(VARIANTS)})")
    if not 1 <= samples <= 100_000:
        raise AutotuneError(f"--samples must be in 1..100000, got {samples}")
    if not 0 <= min_top1_agreement <= 1:
        raise AutotuneError(f"--min-top1-agreement must be in 0..1, got {min_top1_agreement:g}")
    target = check_out_dir(out_dir, force)
    with err.status(f"preparing model {model}"):
        ref = resolve_model(model, signature)
    _import_tensorflow()
    if target.exists():
        import shutil

        shutil.rmtree(target)
    path = str(requests_file.expanduser().resolve()) if requests_file else None
    with err.status("optimizing") as status:
        checked = optimize(ref, chosen, target, path, samples, min_top1_agreement, max_abs_error, status.update)
    doc = {"model": ref.name, "out": str(target), "variants": [c.to_json() for c in checked]}
    (target / "optimize.json").write_text(json.dumps(doc, indent=2) + "\n")
    emit(as_json, doc, lambda: tables.print_variants(doc))


@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """List the built-in models and whether they are cached."""
    from autotune.models.builtin import BUILTINS
    from autotune.paths import models_dir

    rows = [{"name": n, "cached": (models_dir() / n / "1" / "saved_model.pb").exists()} for n in BUILTINS]
    lines = "\n".join(f"{r['name']}\t{'cached' if r['cached'] else 'not built'}" for r in rows)
    emit(as_json, rows, lines)


def _check_load(concurrency: int | None, rate: float | None) -> None:
    if concurrency is not None and rate is not None:
        raise AutotuneError("--concurrency and --rate are exclusive (closed loop or open loop)")
    if concurrency is not None and not 1 <= concurrency <= 4096:
        raise AutotuneError(f"--concurrency must be in 1..4096, got {concurrency}")
    if rate is not None and not 0 < rate <= 1_000_000:
        raise AutotuneError(f"--rate must be in (0, 1000000], got {rate:g}")


def _check_budget(trials: int | None, minutes: float | None) -> None:
    if trials is not None and trials <= 0:
        raise AutotuneError(f"--trials must be > 0, got {trials}")
    if minutes is not None and minutes <= 0:
        raise AutotuneError(f"--minutes must be > 0, got {minutes:g}")


def _check_host_knobs(config: Any, backend: Any | None) -> None:
    """Knobs this host cannot honour are one-line errors before anything starts. BACKEND None (not chosen
    yet) checks what holds on every backend; a backend adds whether it can enforce a fractional cpus."""
    from autotune import gpu
    from autotune.cores import schedulable_cores
    from autotune.cpulimit import check_enforceable, quota_problem

    if config.gpu_memory_fraction and gpu.device_count() == 0:
        raise AutotuneError("gpu_memory_fraction needs a GPU, and NVML sees none on this host")
    # A backend may enforce fractions itself (docker's --cpus); a process started here needs a cgroup quota.
    problem = None if backend is None or backend.enforces_cpu_quota else quota_problem()
    check_enforceable(config.cpus, len(schedulable_cores()), problem)


def _backend(name: str, server_binary: str | None, image: str | None, check: bool = True) -> Any:
    """Resolve the backend (after the input is checked), say in one line which `auto` picked, and warn where
    the real binary exposes a port."""
    from autotune import gpu
    from autotune.servers.backends import TFSERVING_EXPOSURE, choose_backend

    gpus = bool(image and "gpu" in image.rsplit(":", 1)[-1] and gpu.device_count() > 0)
    chosen, why = choose_backend(name, server_binary, image, gpus=gpus, check=check)
    if why:
        notes.note(why)
    if chosen.binds_all_interfaces:
        notes.warn(TFSERVING_EXPOSURE)
    return chosen


@app.command()
def bench(
    model: ModelOpt,
    set_: SetOpt = None,
    concurrency: Annotated[int | None, typer.Option(help="fixed closed-loop clients (default: ramp)")] = None,
    rate: RateOpt = None,
    protocol: ProtocolOpt = Protocol.rest,
    slo_ms: Annotated[float | None, typer.Option("--slo-ms", help="p99 latency bound for the operating point")] = None,
    backend: Annotated[BackendName, typer.Option(help="auto, local, tfserving or docker")] = BackendName.auto,
    server_binary: ServerBinaryOpt = None,
    docker_image: DockerImageOpt = None,
    window_s: WindowSOpt = None,
    warmup_s: WarmupSOpt = None,
    max_windows: MaxWindowsOpt = None,
    max_concurrency: Annotated[int, typer.Option(help="ramp limit")] = 64,
    request_timeout_s: Annotated[
        float, typer.Option(help="a request slower than this is an error; a server silent this long is hung")
    ] = 30.0,
    signature: SignatureOpt = "serving_default",
    requests_file: RequestsOpt = None,
    batch: BatchOpt = None,
    target: TargetOpt = None,
    target_grpc: TargetGrpcOpt = None,
    allow_remote: AllowRemoteOpt = None,
    monitoring: Annotated[bool, typer.Option(help="enable the server's Prometheus endpoint")] = False,
    as_json: JsonOpt = False,
    windows: Annotated[bool, typer.Option(help="include every window in --json output")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the server command and write its files; run nothing")
    ] = False,
) -> None:
    """Measure one serving configuration of one model on a live server."""
    from autotune.knobs import parse_assignments
    from autotune.trial import MeasureSettings, run_trial

    config = parse_assignments(set_ or [])
    _check_load(concurrency, rate)
    if slo_ms is not None and slo_ms <= 0:
        raise AutotuneError(f"--slo-ms must be positive, got {slo_ms:g}")
    window = WINDOW_DEFAULTS.with_overrides(window_s=window_s, warmup_s=warmup_s, max_windows=max_windows)
    if max_concurrency < 1:
        raise AutotuneError(f"--max-concurrency must be >= 1, got {max_concurrency}")
    if not 0 < request_timeout_s <= 3600:
        raise AutotuneError(f"--request-timeout-s must be in (0, 3600], got {request_timeout_s:g}")
    from autotune.models.resolve import resolve_model

    if target is not None:
        if dry_run:
            raise AutotuneError("--dry-run has nothing to show with --target: that server is already running")
        from autotune.models.resolve import served_name
        from autotune.servers.target import fetch_signature, parse_target
        from autotune.trial import run_target

        where = parse_target(target, target_grpc, allow_remote)
        name = served_name(model)
        sig = fetch_signature(where, name, signature)
        _, traffic = _traffic(requests_file, batch, sig)
        settings = MeasureSettings(
            protocol=protocol.value,
            concurrency=concurrency,
            rate=rate,
            slo_ms=slo_ms,
            max_concurrency=max_concurrency,
            request_timeout_s=request_timeout_s,
            **traffic,
            **dataclasses.asdict(window),
        )
        # Its configuration is what it is: recorded as given with --set, else unknown.
        known = config if set_ else None
        err.print(f"bench {name} at {where.url} (running; nothing started or changed), {protocol.value}", markup=False)
        with err.status("measuring") as status:
            result = run_target(where, name, sig, settings, known, progress=lambda msg: status.update(msg))
        _finish_bench(result, as_json, windows)
        return
    _check_host_knobs(config, None)
    with err.status(f"preparing model {model}"):
        ref = resolve_model(model, signature)
    requests, traffic = _traffic(requests_file, batch, ref.signature)
    chosen = _backend(backend.value, server_binary, docker_image, check=not dry_run)
    _check_host_knobs(config, chosen)
    if dry_run:
        _dry_run(ref, config, chosen, monitoring, as_json, requests.payloads(ref.name, ref.signature.name))
        return
    settings = MeasureSettings(
        protocol=protocol.value,
        concurrency=concurrency,
        rate=rate,
        slo_ms=slo_ms,
        max_concurrency=max_concurrency,
        request_timeout_s=request_timeout_s,
        monitoring=monitoring,
        **traffic,
        **dataclasses.asdict(window),
    )
    notes.note(f"bench {ref.name} on backend {chosen.name} ({protocol.value}): {json.dumps(config.to_dict())}")
    with err.status("measuring") as status:
        result = run_trial(ref, config, settings, chosen, progress=lambda msg: status.update(msg))
    _finish_bench(result, as_json, windows)


def _finish_bench(result: Any, as_json: bool, windows: bool) -> None:
    """Print a bench's result; exit non-zero when it failed or was interrupted; warn what to doubt."""
    emit(as_json, result.to_json(windows=windows), lambda: tables.print_result(result))
    if result.failure_reason == FailureReason.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if not result.ok:
        err.print(f"bench failed: {result.failure_reason}: {result.failure_message}", markup=False)
        raise typer.Exit(EXIT_TRIAL_FAILED)
    if not result.metrics.get("stable"):
        err.print("warning: windows did not agree within tolerance (stable=false); treat figures with care")
    if result.metrics.get("client_saturated"):
        err.print("warning: the load generator used a full core: this is a client limit, not the server's")
    served, sent = result.metrics.get("server_requests"), result.metrics.get("client_answered")
    in_flight = (result.metrics.get("concurrency") or 0) + 5
    if served is not None and sent and served > sent * 1.02 + in_flight:
        err.print(
            f"warning: the server counted {served} requests while autotune's got {sent} answers: "
            "it served other traffic during the measurement, and the figures include that load",
            markup=False,
        )


@app.command()
def compare(
    model: ModelOpt,
    set_: Annotated[list[str] | None, typer.Option("--set", help="candidate knob=value (repeatable)")] = None,
    base_set: Annotated[
        list[str] | None, typer.Option("--base-set", help="baseline knob=value (default: TF Serving's defaults)")
    ] = None,
    repeats: Annotated[int | None, typer.Option(help="fixed servers a side (default: until --precision)")] = None,
    precision: Annotated[float, typer.Option(help="stop when each objective's 95% CI is within +-this")] = 0.05,
    max_repeats: Annotated[int, typer.Option(help="most fresh servers per side before stopping")] = 10,
    min_effect: Annotated[float, typer.Option(help="smaller changes are never better/worse (0.02: 2%)")] = 0.02,
    concurrency: Annotated[int | None, typer.Option(help="closed-loop clients (default 8)")] = None,
    rate: RateOpt = None,
    protocol: ProtocolOpt = Protocol.rest,
    backend: Annotated[BackendName, typer.Option(help="auto, local, tfserving or docker")] = BackendName.auto,
    server_binary: ServerBinaryOpt = None,
    docker_image: DockerImageOpt = None,
    window_s: WindowSOpt = None,
    warmup_s: WarmupSOpt = None,
    max_windows: MaxWindowsOpt = None,
    signature: SignatureOpt = "serving_default",
    requests_file: RequestsOpt = None,
    batch: BatchOpt = None,
    target: Annotated[
        str | None,
        typer.Option(help="A is the TF Serving already running here (http://HOST:PORT), measured as it is"),
    ] = None,
    target_grpc: TargetGrpcOpt = None,
    allow_remote: AllowRemoteOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Is a config really better? Measure it (--set) against a baseline (--base-set) on fresh servers, interleaved.

    With --target, the baseline is a server already running (does the deployment perform as tuned?)."""
    from autotune.knobs import parse_assignments
    from autotune.trial import MeasureSettings

    candidate = parse_assignments(set_ or [])
    baseline = parse_assignments(base_set or [])
    _check_load(concurrency, rate)
    from autotune.compare import check_min_effect, describe, stop_rule

    rule, min_effects = stop_rule(repeats, precision, max_repeats), check_min_effect(min_effect)
    window = WINDOW_DEFAULTS.with_overrides(window_s=window_s, warmup_s=warmup_s, max_windows=max_windows)
    from autotune.compare import compare as run_compare
    from autotune.compare import live_measure
    from autotune.models.resolve import resolve_model

    _check_host_knobs(candidate, None)
    _check_host_knobs(baseline, None)
    with err.status(f"preparing model {model}"):
        ref = resolve_model(model, signature)
    _, traffic = _traffic(requests_file, batch, ref.signature)
    chosen = _backend(backend.value, server_binary, docker_image)
    _check_host_knobs(candidate, chosen)
    _check_host_knobs(baseline, chosen)
    # The same fixed load on both sides: a ramp could compare two configs at different loads.
    settings = MeasureSettings(
        protocol=protocol.value,
        concurrency=concurrency if rate is not None or concurrency is not None else 8,
        rate=rate,
        measure_unloaded=False,
        **traffic,
        **dataclasses.asdict(window),
    )
    load = f"rate {rate:g}/s" if rate is not None else f"c={settings.concurrency}"
    measure = live_measure(ref, settings, chosen)
    side_a = json.dumps(baseline.to_dict())
    if target is not None:
        measure = _target_measure(ref, settings, measure, baseline, base_set, target, target_grpc, allow_remote)
        side_a = f"the server at {target} as it runs"
    notes.note(
        f"compare {ref.name} ({chosen.name}, {protocol.value}, {load}), {describe(rule)}: "
        f"A={side_a} B={json.dumps(candidate.to_dict())}"
    )
    with err.status("measuring") as status:
        result = run_compare(baseline, candidate, rule, measure, status.update, min_effects=min_effects)
    emit(as_json, result.to_json(), lambda: tables.print_comparison(result))
    from autotune.store import Store

    # Both sides of every run, kept: each ratio compare reports can be recomputed from the store.
    Store().record_comparison("compare", ref.name, result.to_json(), result.verdict.value)
    if result.a.medians()["runs"] < 2 or result.b.medians()["runs"] < 2:
        reasons = sorted({r.failure_reason or "" for r in result.a.runs + result.b.runs if not r.ok})
        err.print(f"compare failed: fewer than two good runs on a side ({', '.join(reasons)})", markup=False)
        raise typer.Exit(EXIT_TRIAL_FAILED)


def _target_measure(
    ref: Any,
    settings: Any,
    local: Any,
    baseline: Any,
    base_set: list[str] | None,
    target: str,
    target_grpc: str | None,
    allow_remote: list[str] | None,
) -> Any:
    """compare's measurements when side A is a running server: A measured where it runs, B on fresh servers."""
    from autotune.compare import running_side_a
    from autotune.servers.target import fetch_signature, parse_target

    where = parse_target(target, target_grpc, allow_remote)
    served = fetch_signature(where, ref.name, ref.signature.name)
    if served.inputs != ref.signature.inputs:
        raise AutotuneError(f"--target serves {ref.name} with other inputs than {ref.base_path}: not the same model")
    return running_side_a(baseline, where, ref, settings, local, baseline if base_set else None)


def _traffic(requests_file: Path | None, batch: int | None, signature: Any) -> tuple[Any, dict[str, Any]]:
    """Read and check the request file against the model's signature before anything starts; say what
    will be sent; return the requests and the settings' fields for them."""
    from autotune.traffic.requests import load_requests

    path = str(requests_file.expanduser().resolve()) if requests_file else None
    requests = load_requests(path, signature, batch)
    if path:
        summary = requests.summary()
        notes.note(
            f"requests: {summary['requests']} from {path} ({summary['format']}), "
            f"{summary['instances_per_request']:g} instances each on average"
        )
    return requests, {"requests_file": path, "batch": batch}


def _dry_run(ref: Any, config: Any, backend: Any, monitoring: bool, as_json: bool, payloads: list[Any]) -> None:
    """Print exactly what a trial would run, and leave its files in a directory for inspection."""
    import datetime as dt
    import shlex

    from autotune.paths import autotune_home
    from autotune.trial import prepare_launch

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%f")
    workdir = autotune_home() / "dry-run" / stamp
    workdir.mkdir(parents=True, mode=0o700)
    prepared = prepare_launch(ref, config, backend, workdir, monitoring, payloads)
    batching = prepared.paths.batching_file
    doc = {
        "backend": backend.name,
        "argv": prepared.launch.argv,
        "grpc_target": prepared.launch.grpc_target,
        "cpu": {
            "cpus": prepared.cpu.cpus,
            "server_cores": prepared.cpu.server_cores,
            "client_cores": prepared.cpu.client_cores,
            "cfs_quota_us": prepared.cpu.quota_us,
        },
        "files": prepared.files,
        "batching_parameters": batching.read_text() if batching else None,
    }

    def show() -> None:
        print(shlex.join(prepared.launch.argv))
        for name, path in prepared.files.items():
            err.print(f"{name}: {path}", markup=False)
        if batching is not None:
            err.print(batching.read_text().rstrip(), markup=False)

    emit(as_json, doc, show)


def study_of(model: str | None, study_file: Path | None) -> Study:
    """The study a command means: STUDY_FILE's, or MODEL's; exactly one of them."""
    from autotune.spec import load_study, study_for_model

    if (model is None) == (study_file is None):
        raise AutotuneError("give exactly one of --model NAME|PATH or --study FILE")
    return load_study(study_file) if study_file else study_for_model(model or "")


@app.command()
def start(
    model: StudyModelOpt = None,
    study_file: StudyFileOpt = None,
    trials: TrialsOpt = None,
    minutes: MinutesOpt = None,
    foreground: Annotated[bool, typer.Option(help="run the job in this process, not in the daemon")] = False,
    detach: Annotated[bool, typer.Option(help="enqueue, make sure the daemon runs, print the job id")] = False,
    window_s: WindowSOpt = None,
    warmup_s: WarmupSOpt = None,
    max_windows: MaxWindowsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the Pareto set as JSON at the end")] = False,
    backend: Annotated[BackendName | None, typer.Option(help="override the study's backend")] = None,
    server_binary: ServerBinaryOpt = None,
    docker_image: DockerImageOpt = None,
    confirm_repeats: Annotated[
        int | None,
        typer.Option(help="the least fresh servers a side when confirming the front against the defaults (0: off)"),
    ] = None,
    confirm_max_repeats: Annotated[
        int | None,
        typer.Option(min=3, max=50, help="the most fresh servers a side when confirming (default: the study's, 10)"),
    ] = None,
    requests_file: RequestsOpt = None,
    batch: BatchOpt = None,
    variants: Annotated[
        str | None,
        typer.Option(
            help="also search these model variants beside the SavedModel, comma-separated (tflite_fp16,tflite_int8); "
            "each is checked against the SavedModel's answers ([slo] min_top1_agreement)"
        ),
    ] = None,
    mixed_precision: Annotated[
        bool,
        typer.Option(
            "--mixed-precision",
            help="also search --mixed_precision=bfloat16 (CPUs with native bf16), its answers checked like a variant's",
        ),
    ] = False,
) -> None:
    """Tune a model: Bayesian search over the serving knobs, results kept in the database.

    Window options default to the study's [load] table, else to the values shown.
    """
    from autotune.job import study_settings
    from autotune.spec import confirm_repeats_problem, with_mixed_precision, with_variants

    study = study_of(model, study_file)
    _check_budget(trials, minutes)
    if confirm_repeats is not None:
        problem = confirm_repeats_problem(confirm_repeats)
        if problem:
            raise AutotuneError(f"--confirm-repeats {problem}")
        study = dataclasses.replace(study, confirm_repeats=confirm_repeats)
    if confirm_max_repeats is not None:
        study = dataclasses.replace(study, confirm_max_repeats=max(confirm_max_repeats, study.confirm_repeats))
    study = dataclasses.replace(
        study, windows=study.windows.with_overrides(window_s=window_s, warmup_s=warmup_s, max_windows=max_windows)
    )
    if requests_file is not None:
        study = dataclasses.replace(study, requests=str(requests_file.expanduser().resolve()))
    if batch is not None:
        study = dataclasses.replace(study, batch=batch)
    if variants is not None:
        study = with_variants(study, [v.strip() for v in variants.split(",") if v.strip()])
    if mixed_precision:
        from autotune.cpufeatures import bf16_problem

        study = with_mixed_precision(study, bf16_problem())
    budget, limit = trials or study.trials, minutes or study.minutes
    settings = study_settings(study)
    _check_study_input(study, settings)
    chosen = _backend(backend.value if backend else study.backend, server_binary, docker_image)
    if not foreground:
        from autotune.daemon_control import ensure_daemon
        from autotune.job import enqueue_job

        job_id = enqueue_job(study, budget, limit, settings, chosen)
        _jobs_changed()
        pid = ensure_daemon()
        err.print(f"job {job_id} queued for {study.model} ({budget} trials); daemon pid {pid}")
        if detach:
            emit(as_json, {"job_id": job_id, "daemon_pid": pid}, lambda: print(job_id))
            return
        _follow(job_id, as_json)
        return
    _start_foreground(study, budget, limit, settings, chosen, as_json)


def _check_study_input(study: Any, settings: Any) -> None:
    """The model and its request file, checked before the backend is chosen (and said) and anything is stored."""
    from autotune.models.resolve import check_spec

    check_spec(study.model)
    if settings.requests_file:
        from autotune.models.resolve import resolve_model
        from autotune.traffic.requests import load_requests

        with err.status(f"preparing model {study.model}"):
            ref = resolve_model(study.model, study.signature)
        load_requests(settings.requests_file, ref.signature, settings.batch)


def _start_foreground(study: Any, budget: int, minutes: float, settings: Any, backend: Any, as_json: bool) -> None:
    from autotune.progress import run_with_progress

    # A job in this process, not the daemon's: marked at its start and end (between, the daemon's list catches up
    # every few seconds).
    _jobs_changed()
    try:
        result = run_with_progress(study, budget, minutes, settings, backend)
    finally:
        _jobs_changed()
    title = f"Pareto set · job {result.job_id} · {result.study_name}"
    _show_front(result.pareto, title, list(study.objectives), as_json)
    if result.state == JobState.done:
        _print_verdict(result.pareto, list(study.objectives))
    if result.state == JobState.cancelled:
        err.print(f"job {result.job_id} cancelled; the trials measured so far are kept")
        raise typer.Exit(EXIT_INTERRUPTED)


def _show_front(rows: list[dict[str, Any]], title: str, objectives: list[str], as_json: bool) -> None:
    emit(as_json, rows, lambda: tables.print_pareto(rows, title, objectives))


@app.command()
def pareto(model: TunedModelOpt = None, job_id: JobOpt = None, as_json: JsonOpt = False) -> None:
    """Show the Pareto set of a job (confirmed figures where confirmed): the model's latest on this host by default."""
    from autotune.store import Store

    job = _pick_job(model, job_id)
    rows = Store().job_front(job)
    _show_front(rows, f"Pareto set · job {job.id} · {job.study_name}", list(job.study["objectives"]), as_json)
    if as_json:
        return
    unstable = [
        t.number for t in job.trials if t.state == TrialState.complete and not (t.metrics or {}).get("stable", True)
    ]
    if unstable:
        err.print(f"unstable (never on the front, never exported): trials {', '.join(map(str, unstable))}")
    _print_verdict(rows, list(job.study["objectives"]))


def _print_verdict(rows: list[dict[str, Any]], objectives: list[str]) -> None:
    from autotune.confirm import summary_line

    line = summary_line(rows, objectives)
    err.print(line or "not confirmed: these are single draws of the search (confirm_repeats = 0 or job unfinished)")


@app.command()
def export(
    out_dir: OutDirOpt,
    model: TunedModelOpt = None,
    job_id: JobOpt = None,
    pick: Annotated[
        str | None,
        typer.Option(
            help="max-throughput, min-latency, balanced, min-cost, or 'trial N' "
            "(default: min-cost for a study that minimizes cost, else balanced)"
        ),
    ] = None,
    force: ForceOpt = False,
    image: Annotated[
        str, typer.Option(help="TF Serving image for docker-run.sh and the manifests")
    ] = "tensorflow/serving:latest",
    fmt: Annotated[
        ExportFormat,
        typer.Option("--format", help="tfserving: the server's files; k8s or kserve: manifests too"),
    ] = ExportFormat.tfserving,
    storage_uri: Annotated[
        str | None, typer.Option(help="kserve: where the SavedModel lives (default pvc://MODEL-model/)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a job's chosen Pareto configuration as TF Serving config files (and Kubernetes or KServe manifests)."""
    from autotune.confirm import summary_line
    from autotune.export import (
        DeployOptions,
        check_out_dir,
        choose_entry,
        export_meta,
        render_deployment,
        several_models_files,
        single_model_files,
        write_export,
    )
    from autotune.knobs import config_from_dict
    from autotune.servers.backends import backend_class
    from autotune.store import Store

    if storage_uri and fmt != ExportFormat.kserve:
        raise AutotuneError("--storage-uri is for --format kserve")
    job = _pick_job(model, job_id)
    rows = Store().job_front(job)
    if pick is None:
        from autotune.pareto import default_pick

        pick = default_pick(list(job.study["objectives"]))
    chosen = choose_entry(job, rows, pick)
    model_base = Path(job.model.path)
    target = check_out_dir(out_dir, model_base, force)
    config = config_from_dict(chosen["config"])
    meta = export_meta(config, chosen["metrics"], job, chosen["trial"])
    for key in ("confirmed", "verdict", "vs_defaults", "defaults", "search_metrics"):
        if key in chosen:
            meta[key] = chosen[key]
    written: dict[str, str | bytes]
    mix = (job.settings or {}).get("mix")
    if mix:
        if fmt != ExportFormat.tfserving:
            raise AutotuneError(
                f"--format {fmt.value}: a job of several models exports TF Serving's files only (for now)"
            )
        written, warmup_note = several_models_files(job, config, mix, target)
        files = {k: v for k, v in written.items() if isinstance(v, str)}
        meta["mix"] = mix  # the models this server serves, and the share of the requests each was measured with
    else:
        written, files, warmup_note, variant_note = single_model_files(job, config, target, image)
        if variant_note is not None:
            meta["model_variant"] = variant_note
    meta["warmup"] = warmup_note
    deployment = render_deployment(files, config, meta, job.study, DeployOptions(fmt.value, image, storage_uri))
    written.update(deployment)
    write_export(written, meta, target)
    verdict = summary_line(rows, list(job.study["objectives"]))
    doc = {**meta, "out": str(target), "files": sorted([*written, "autotune.json"]), "verdict_line": verdict}
    if (kind := backend_class(job.backend)) is not None and kind.is_stand_in:
        # The stand-in behaves like TF Serving, but a deployment runs TF Serving: say where the figures came from.
        doc["warning"] = (
            f"job {job.id} measured autotune-model-server (the local stand-in), not TF Serving: "
            "check the export with `autotune bench --backend tfserving` or `--backend docker` "
            "before trusting its figures"
        )
        err.print(f"warning: {doc['warning']}", markup=False)

    def show() -> None:
        err.print(f"exported trial {chosen['trial']} of job {job.id} ({tables.short(config.to_dict())}) to {target}")
        err.print(warmup_note, markup=False)
        if "model_variant" in meta:
            err.print(meta["model_variant"], markup=False)
        _print_verdict(rows, list(job.study["objectives"]))

    emit(as_json, doc, show)


@app.command()
def report(
    out_dir: OutDirOpt,
    model: TunedModelOpt = None,
    job_id: JobOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a job's report: Pareto plot (PNG, HTML) and every trial with its gain over defaults."""
    from autotune.report import write_report

    job = _pick_job(model, job_id)
    target = write_report(job, out_dir, force)
    doc = {"job_id": job.id, "out": str(target), "files": sorted(p.name for p in target.iterdir())}
    emit(as_json, doc, lambda: err.print(f"report of job {job.id} written to {target} (open {target / 'report.html'})"))


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOpt = False) -> None:
    """Create or migrate autotune's tables (idempotent); Optuna's tables are left to Optuna."""
    from autotune.store.db import db_url, upgrade

    before, after = upgrade(db_url())
    said = (
        f"database already at {after}" if before == after else f"database upgraded from {before or 'empty'} to {after}"
    )
    emit(as_json, {"before": before, "after": after}, said)


@db_app.command("prune")
def db_prune(
    keep_days: Annotated[float, typer.Option(min=0, help="keep every detail of jobs finished within this many days")],
    dry_run: Annotated[bool, typer.Option(help="count what would go, change nothing")] = False,
    vacuum: Annotated[bool, typer.Option(help="then give the freed space back to the file system (SQLite)")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Drop the window-by-window detail and server logs of old finished jobs; fronts, metrics and comparisons stay."""
    from autotune.store.retention import Retention

    done = Retention().prune(keep_days, dry_run=dry_run, vacuum=vacuum)
    verb = "would drop" if dry_run else "dropped"
    size = (
        f"; database {done.bytes_before / 2**20:.1f} -> {done.bytes_after / 2**20:.1f} MiB"
        if done.bytes_before is not None and done.bytes_after is not None
        else ""
    )
    said = (
        f"{verb} {done.windows} windows and {done.log_tails} server log tails from {done.trials} trials of "
        f"{done.jobs} jobs finished before {done.cutoff} UTC{size}"
    )
    emit(as_json, done.to_json(), said)


def _follow(job_id: int, as_json: bool) -> None:
    """Follow a daemon's job to its end, then show its front; Ctrl-C detaches and the job goes on."""
    from autotune.progress import follow_job
    from autotune.store import Store

    job = follow_job(job_id)
    if job is None:
        return
    rows = Store().job_front(job)
    _show_front(rows, f"Pareto set · job {job.id} · {job.state}", list(job.study["objectives"]), as_json)
    if job.state == JobState.done:
        _print_verdict(rows, list(job.study["objectives"]))
    if job.state == JobState.failed:
        raise AutotuneError(f"job {job_id} failed: {job.error}")
    if job.state == JobState.cancelled:
        raise typer.Exit(EXIT_INTERRUPTED)


@app.command()
def follow(
    job_id: Annotated[int, typer.Argument(help="job id (see autotune status)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the Pareto set as JSON at the end")] = False,
) -> None:
    """Re-attach to a job: progress until it ends, then its Pareto set."""
    _follow(job_id, as_json)


@app.command()
def daemon(
    log_file: Annotated[Path | None, typer.Option(help="log here instead of stderr")] = None,
    poll_s: Annotated[float, typer.Option(help="how often to look for queued jobs and due schedules")] = 2.0,
    metrics_port: Annotated[
        int, typer.Option(help="Prometheus metrics on 127.0.0.1 (0: any free port)", envvar="AUTOTUNE_METRICS_PORT")
    ] = 9468,
    max_foreign_cores: Annotated[
        float, typer.Option(help="gate: CPU load outside autotune, in cores", envvar="AUTOTUNE_GATE_MAX_FOREIGN_CORES")
    ] = 0.5,
    quiet_s: Annotated[
        float, typer.Option(help="gate: seconds the host must be quiet before a trial", envvar="AUTOTUNE_GATE_QUIET_S")
    ] = 5.0,
    stale_after_s: Annotated[
        float,
        typer.Option(help="take back a job whose worker on another host has been silent this long (seconds)"),
    ] = 120.0,
    log_max_mb: Annotated[float, typer.Option(help="rotate --log-file at this size (3 old files are kept)")] = 10.0,
    prune_days: Annotated[
        float | None,
        typer.Option(help="after each job, drop window detail of jobs finished this many days ago (db prune)"),
    ] = None,
    print_systemd_unit: Annotated[bool, typer.Option(help="print a systemd unit and exit")] = False,
) -> None:
    """The worker: one per host and database; runs queued jobs while the host is quiet."""
    if print_systemd_unit:
        from autotune.daemon_control import systemd_unit

        print(systemd_unit(), end="")
        return
    if poll_s <= 0 or max_foreign_cores < 0 or quiet_s < 0 or not 0 <= metrics_port <= 65535:
        raise AutotuneError("need --poll-s > 0, --max-foreign-cores >= 0, --quiet-s >= 0, --metrics-port in 0..65535")
    if log_max_mb < 0.01 or (prune_days is not None and prune_days < 0):
        raise AutotuneError("need --log-max-mb >= 0.01 and --prune-days >= 0")
    if stale_after_s < 10:
        # Heartbeats come every 2 s; less than a few missed ones would take jobs from live daemons.
        raise AutotuneError(f"--stale-after-s must be >= 10, got {stale_after_s:g}")
    from autotune.daemon import DaemonOptions, run_daemon
    from autotune.gate import GateSettings

    gate = GateSettings(max_foreign_cores=max_foreign_cores, quiet_s=quiet_s)
    options = DaemonOptions(
        log_file,
        poll_s,
        metrics_port,
        gate,
        stale_after_s=stale_after_s,
        log_max_bytes=int(log_max_mb * 2**20),
        prune_days=prune_days,
    )
    raise typer.Exit(run_daemon(options))


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """The daemon (pid, uptime, gate) and the recent jobs: read from the daemon's status file while one runs."""
    import datetime as dt

    from autotune.daemon_control import read_status, snapshot_is_current

    daemon_info = read_status()
    if daemon_info:
        started = dt.datetime.fromisoformat(daemon_info["started_at"].rstrip("Z"))
        daemon_info["uptime_s"] = round((dt.datetime.now(dt.UTC).replace(tzinfo=None) - started).total_seconds())
    if daemon_info and snapshot_is_current(daemon_info):
        # The daemon's own list: no SQLAlchemy import, no query, on a host the daemon may be measuring.
        jobs, drift = daemon_info["jobs"], daemon_info.get("drift", [])
        schedules, source = daemon_info.get("schedules", []), "daemon"
    else:
        from autotune.store import Store, job_summary

        store = Store()
        jobs, drift = [job_summary(j) for j in store.jobs()], store.drift_checks()
        schedules, source = store.schedules(), "store"
    if daemon_info:
        daemon_info = {k: v for k, v in daemon_info.items() if k not in ("jobs", "drift", "schedules")}
    emit(
        as_json,
        {"daemon": daemon_info, "jobs": jobs, "drift": drift, "schedules": schedules, "source": source},
        lambda: tables.print_status(daemon_info, jobs, drift, schedules),
    )


def _jobs_changed() -> None:
    """After a command changed a job: `status` reads the store until the daemon has written its list anew."""
    from autotune.daemon_control import mark_changed

    mark_changed()


@app.command()
def stop(
    job_id: Annotated[int | None, typer.Argument(help="the job to cancel")] = None,
    stop_daemon: Annotated[
        bool, typer.Option("--daemon", help="stop the daemon (its current trial is interrupted, the job resumes later)")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a job (`stop JOB`), or stop the daemon cleanly (`stop --daemon`)."""
    if (job_id is None) == (not stop_daemon):
        raise AutotuneError("give a job id to cancel (autotune stop JOB) or --daemon to stop the daemon, not both")
    if job_id is not None:
        from autotune.store import Store

        try:
            state = Store().cancel(job_id)
        except LookupError:
            raise AutotuneError(f"job {job_id} does not exist") from None
        _jobs_changed()
        says = {
            JobState.cancelled: "cancelled",
            JobState.running: "cancel requested; the daemon stops it within seconds",
        }
        emit(as_json, {"job_id": job_id, "state": state}, f"job {job_id}: {says.get(state, f'already {state}')}")
        return
    from autotune.daemon_control import stop_daemon as stop_it

    pid = stop_it()
    emit(
        as_json,
        {"daemon_pid": pid, "stopped": pid is not None},
        "no daemon running" if pid is None else f"daemon {pid} stopped",
    )


@app.command()
def retune(
    model: Annotated[str, typer.Option("--model", "-m", help="built-in name or SavedModel path")],
    trials: TrialsOpt = None,
    minutes: MinutesOpt = None,
    check_target: Annotated[
        str | None,
        typer.Option(
            help="instead: measure the deployed TF Serving at this URL as the last job measured, against what "
            "its export predicted (drift from production); nothing is queued"
        ),
    ] = None,
    target_grpc: TargetGrpcOpt = None,
    allow_remote: AllowRemoteOpt = None,
    job_id: JobOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enqueue a retune (re-measure the stored Pareto set, report drift, search again) and ensure a daemon."""
    from autotune.daemon import enqueue_retune
    from autotune.daemon_control import ensure_daemon
    from autotune.models.resolve import check_spec

    if check_target is not None:
        _check_target(model, job_id, check_target, target_grpc, allow_remote, as_json)
        return
    _check_budget(trials, minutes)
    check_spec(model)
    job_id = enqueue_retune(model, trials, minutes)
    _jobs_changed()
    pid = ensure_daemon()
    emit(as_json, {"job_id": job_id, "daemon_pid": pid}, f"retune job {job_id} queued; daemon pid {pid}")


def _check_target(
    model: str, job_id: int | None, url: str, grpc: str | None, allow_remote: list[str] | None, as_json: bool
) -> None:
    from autotune.servers.target import parse_target
    from autotune.target_check import check_target

    where = parse_target(url, grpc, allow_remote)
    job = _pick_job(model, job_id)
    err.print(f"checking {where.url} against job {job.id}'s prediction (measured as the job measured)", markup=False)
    with err.status("measuring") as status:
        check = check_target(job, where, status.update)
    _jobs_changed()  # a drift check was stored
    change = "n/a" if check.change is None else f"{check.change:+.1%}"
    line = (
        f"{job.model.name} at {where.url}: goodput {check.measured_rps:.1f} rps, job {job.id} trial {check.trial} "
        f"predicted {check.predicted_rps:.1f} rps ({change}): "
        + ("DRIFT beyond" if check.drifted else "within")
        + " the tolerance"
        + ("" if check.feasible else " (the reading missed the SLO, the error limit or stability: goodput 0)")
    )
    emit(as_json, check.to_json(), line)
    if not check.result.ok:
        err.print(f"measurement failed: {check.result.failure_reason}: {check.result.failure_message}", markup=False)
        raise typer.Exit(EXIT_TRIAL_FAILED)


@schedule_app.command("add")
def schedule_add(
    model: Annotated[str, typer.Option("--model", "-m", help="built-in name or SavedModel path")],
    cron: Annotated[str, typer.Option(help="cron expression, UTC (e.g. '0 2 * * *')")],
    trials: Annotated[int | None, typer.Option(help="trial budget per retune")] = None,
    minutes: Annotated[float | None, typer.Option(help="time budget per retune")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Retune MODEL on this host whenever CRON fires (the daemon enqueues it)."""
    from autotune.fingerprint import fingerprint, host_info
    from autotune.models.resolve import check_spec
    from autotune.spec import study_for_model
    from autotune.store import Store
    from autotune.store.schedules import check_cron

    check_cron(cron)
    check_spec(model)  # refused now, not at 2 am
    study_for_model(model)
    info = host_info()
    store = Store()
    schedule_id = store.add_schedule(model, cron, store.host(info, fingerprint(info)), trials, minutes)
    row = next(r for r in store.schedules() if r["id"] == schedule_id)
    emit(as_json, row, f"schedule {schedule_id}: retune {model} at '{row['cron']}' (next {row['next_run_at']})")


@schedule_app.command("list")
def schedule_list(as_json: JsonOpt = False) -> None:
    """Schedules with their next run time (UTC)."""
    from autotune.store import Store

    rows = Store().schedules()

    emit(as_json, rows, lambda: tables.print_schedules(rows))


@schedule_app.command("remove")
def schedule_remove(schedule_id: Annotated[int, typer.Argument(help="schedule id")], as_json: JsonOpt = False) -> None:
    """Delete a schedule."""
    from autotune.store import Store

    Store().remove_schedule(schedule_id)
    emit(as_json, {"removed": schedule_id}, f"schedule {schedule_id} removed")


@cron_app.command("install")
def cron_install(
    model: Annotated[str, typer.Option("--model", "-m", help="built-in name or SavedModel path")],
    cron: Annotated[str, typer.Option(help="cron expression (the host's cron time zone)")] = "0 2 * * *",
    print_only: Annotated[bool, typer.Option("--print", help="print the crontab line, change nothing")] = False,
    file: Annotated[Path | None, typer.Option(help="write to this crontab file instead of the user's crontab")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Install a crontab entry running `autotune retune --model MODEL` (for hosts that prefer cron)."""
    from autotune.cron import crontab_line, install

    line = crontab_line(model, cron)
    if print_only:
        emit(as_json, {"line": line, "installed_in": None}, lambda: print(line))
        return
    where = install(model, cron, file)
    emit(as_json, {"line": line, "installed_in": str(where)}, f"installed in {where}: {line}")


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _fail(as_json: bool, message: str, code: int) -> None:
    # Under --json, a script reads stdout: the error is a JSON object there, with the same exit code.
    # Either way one line: a message with a newline (a parser's, a server's) would read as two errors in a log.
    message = notes.one_line(message)
    if as_json:
        print(json.dumps({"error": message}))
    else:
        err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)


def _usage_error(exc: Any) -> str:
    """A usage error as one line, with where to find help (typer's own display is a usage block and a box)."""
    ctx = getattr(exc, "ctx", None)
    where = f" (see {ctx.command_path} -h)" if ctx is not None else ""
    return exc.format_message() + where


def _polled_status(argv: list[str]) -> bool:
    """Run `status [--json]` without typer's option parsing, whose import (pydantic) is most of what a call
    costs: a `watch autotune status` stays light on a host the daemon measures. False for any other command."""
    rest = [a for a in argv if a not in _ANYWHERE]
    if rest not in (["status"], ["status", "--json"]):
        return False
    notes.QUIET, tables.PLAIN = "--quiet" in argv, "--plain" in argv
    status(as_json=len(rest) == 2)
    return True


# Registered here, after the shared options it uses are defined.
from autotune import cli_perf  # noqa: E402, F401


def main() -> None:
    """Console-script entry: user errors are one line (a JSON object under --json) and exit 1, never a traceback."""
    from typer.exceptions import TyperException  # usage errors: unknown options, bad values

    # SIGTERM takes the same clean path as Ctrl-C: servers and load generators are stopped.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    argv = _hoisted(sys.argv[1:])
    as_json = "--json" in argv
    try:
        if _polled_status(argv):
            sys.exit(0)
        # Not standalone: usage errors are ours to print, as one line like every other error.
        code = app(args=argv, standalone_mode=False)
    except AutotuneError as exc:
        _fail(as_json, str(exc), EXIT_USER_ERROR)
    except TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `autotune` or `autotune models` alone: the help, as asked
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)
        _fail(as_json, _usage_error(exc), exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        _fail(as_json, "interrupted", EXIT_INTERRUPTED)
    except OSError as exc:  # the machine's refusal (a full disk, a read-only home): one line, as any other error
        where = f": {exc.filename}" if exc.filename else ""
        _fail(as_json, f"{exc.strerror or exc}{where}", EXIT_USER_ERROR)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    # `python -m autotune.cli` runs this file as __main__: commands registered from other modules (cli_perf)
    # attach to autotune.cli's app, so run that module's main.
    from autotune.cli import main as _main

    _main()
