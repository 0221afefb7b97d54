"""`autotune bench` and `compare`: measure configs on live servers (or a running TF Serving)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from autotune import notes, tables
from autotune.cli.app import app
from autotune.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_TRIAL_FAILED,
    AllowRemoteOpt,
    BackendName,
    BackendOpt,
    BatchOpt,
    DockerImageOpt,
    JsonOpt,
    MaxWindowsOpt,
    ModelOpt,
    P99ToleranceOpt,
    Protocol,
    ProtocolOpt,
    RateOpt,
    RequestsOpt,
    ServerBinaryOpt,
    SetOpt,
    SignatureOpt,
    TargetGrpcOpt,
    TargetOpt,
    ToleranceOpt,
    WarmupSOpt,
    WindowSOpt,
    check_host_knobs,
    check_load,
    emit,
    err,
    flag,
    resolve_backend,
    window_flags,
)
from autotune.errors import AutotuneError
from autotune.options import CONCURRENCY, MAX_CONCURRENCY, REQUEST_TIMEOUT_S
from autotune.states import FailureReason
from autotune.windows import WINDOW_DEFAULTS


@app.command()
def bench(
    model: ModelOpt,
    set_: SetOpt = None,
    concurrency: Annotated[int | None, flag(CONCURRENCY, help="fixed closed-loop clients (default: ramp)")] = None,
    rate: RateOpt = None,
    protocol: ProtocolOpt = Protocol.rest,
    slo_ms: Annotated[float | None, typer.Option("--slo-ms", help="p99 latency bound for the operating point")] = None,
    backend: BackendOpt = BackendName.auto,
    server_binary: ServerBinaryOpt = None,
    docker_image: DockerImageOpt = None,
    window_s: WindowSOpt = None,
    warmup_s: WarmupSOpt = None,
    max_windows: MaxWindowsOpt = None,
    tolerance: ToleranceOpt = None,
    p99_tolerance: P99ToleranceOpt = None,
    max_concurrency: Annotated[int, flag(MAX_CONCURRENCY)] = MAX_CONCURRENCY.default,
    request_timeout_s: Annotated[float, flag(REQUEST_TIMEOUT_S)] = REQUEST_TIMEOUT_S.default,
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

    config = parse_assignments(set_ or [])
    check_load(concurrency, rate)
    if slo_ms is not None and slo_ms <= 0:
        raise AutotuneError(f"--slo-ms must be positive, got {slo_ms:g}")
    window = window_flags(WINDOW_DEFAULTS, window_s, warmup_s, max_windows, tolerance, p99_tolerance)
    MAX_CONCURRENCY.check("max_concurrency", max_concurrency)
    REQUEST_TIMEOUT_S.check("request_timeout_s", request_timeout_s)
    # What both paths measure with; each adds the traffic it read (and the live one, monitoring).
    how = {
        "protocol": protocol.value,
        "concurrency": concurrency,
        "rate": rate,
        "slo_ms": slo_ms,
        "max_concurrency": max_concurrency,
        "request_timeout_s": request_timeout_s,
        **dataclasses.asdict(window),
    }
    if target is not None:
        if dry_run:
            raise AutotuneError("--dry-run has nothing to show with --target: that server is already running")
        # Its configuration is what it is: recorded as given with --set, else unknown.
        where = (target, target_grpc, allow_remote)
        result = _bench_target(model, where, signature, requests_file, batch, how, config if set_ else None)
        _finish_bench(result, as_json, windows)
        return
    from autotune.measure import MeasureSettings, run_trial
    from autotune.models.resolve import resolve_model

    check_host_knobs(config, None)
    with err.status(f"preparing model {model}"):
        ref = resolve_model(model, signature)
    requests, traffic = _traffic(requests_file, batch, ref.signature)
    chosen = resolve_backend(backend.value, server_binary, docker_image, check=not dry_run)
    check_host_knobs(config, chosen)
    if dry_run:
        _dry_run(ref, config, chosen, monitoring, as_json, requests.payloads(ref.name, ref.signature.name))
        return
    settings = MeasureSettings(**how, monitoring=monitoring, **traffic)
    notes.note(f"bench {ref.name} on backend {chosen.name} ({protocol.value}): {json.dumps(config.to_dict())}")
    with err.status("measuring") as status:
        result = run_trial(ref, config, settings, chosen, progress=lambda msg: status.update(msg))
    _finish_bench(result, as_json, windows)


def _bench_target(
    model: str,
    where: tuple[str, str | None, list[str] | None],
    signature: str,
    requests_file: Path | None,
    batch: int | None,
    how: dict[str, Any],
    known: Any,
) -> Any:
    """`bench --target`: measure the server running at WHERE (url, gRPC target, hosts allowed), starting nothing."""
    from autotune.measure import MeasureSettings, run_target
    from autotune.models.resolve import served_name
    from autotune.servers.target import fetch_signature, parse_target

    target = parse_target(*where)
    name = served_name(model)
    sig = fetch_signature(target, name, signature)
    _, traffic = _traffic(requests_file, batch, sig)
    settings = MeasureSettings(**how, **traffic)
    protocol = how["protocol"]
    err.print(f"bench {name} at {target.url} (running; nothing started or changed), {protocol}", markup=False)
    with err.status("measuring") as status:
        return run_target(target, name, sig, settings, known, progress=lambda msg: status.update(msg))


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
    concurrency: Annotated[int | None, flag(CONCURRENCY, help="closed-loop clients (default 8)")] = None,
    rate: RateOpt = None,
    protocol: ProtocolOpt = Protocol.rest,
    backend: BackendOpt = BackendName.auto,
    server_binary: ServerBinaryOpt = None,
    docker_image: DockerImageOpt = None,
    window_s: WindowSOpt = None,
    warmup_s: WarmupSOpt = None,
    max_windows: MaxWindowsOpt = None,
    tolerance: ToleranceOpt = None,
    p99_tolerance: P99ToleranceOpt = None,
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
    from autotune.measure import MeasureSettings

    candidate = parse_assignments(set_ or [])
    baseline = parse_assignments(base_set or [])
    check_load(concurrency, rate)
    from autotune.compare import check_min_effect, describe, stop_rule

    rule, min_effects = stop_rule(repeats, precision, max_repeats), check_min_effect(min_effect)
    window = window_flags(WINDOW_DEFAULTS, window_s, warmup_s, max_windows, tolerance, p99_tolerance)
    from autotune.compare import compare as run_compare
    from autotune.compare import live_measure
    from autotune.models.resolve import resolve_model

    check_host_knobs(candidate, None)
    check_host_knobs(baseline, None)
    with err.status(f"preparing model {model}"):
        ref = resolve_model(model, signature)
    _, traffic = _traffic(requests_file, batch, ref.signature)
    chosen = resolve_backend(backend.value, server_binary, docker_image)
    check_host_knobs(candidate, chosen)
    check_host_knobs(baseline, chosen)
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
    _finish_compare(result, ref.name, as_json)


def _finish_compare(result: Any, model_name: str, as_json: bool) -> None:
    """Print a comparison, keep it, and exit non-zero when a side had fewer than two good runs."""
    from autotune.store import Store

    emit(as_json, result.to_json(), lambda: tables.print_comparison(result))
    # Both sides of every run, kept: each ratio compare reports can be recomputed from the store.
    Store().record_comparison("compare", model_name, result.to_json(), result.verdict.value)
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

    from autotune.measure import prepare_launch
    from autotune.paths import autotune_home

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
