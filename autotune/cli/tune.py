"""`autotune start`, `follow`, `pareto`, `export` and `report`: a tuning job and what it found."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from autotune import tables
from autotune.cli.app import app
from autotune.cli.common import (
    EXIT_INTERRUPTED,
    BackendName,
    BatchOpt,
    DockerImageOpt,
    ExportFormat,
    ForceOpt,
    JobOpt,
    JsonOpt,
    MaxWindowsOpt,
    MinutesOpt,
    OutDirOpt,
    P99ToleranceOpt,
    RequestsOpt,
    ServerBinaryOpt,
    StudyFileOpt,
    StudyModelOpt,
    ToleranceOpt,
    TrialsOpt,
    TunedModelOpt,
    WarmupSOpt,
    WindowSOpt,
    check_budget,
    emit,
    err,
    jobs_changed,
    pick_job,
    resolve_backend,
    study_of,
    window_flags,
)
from autotune.errors import AutotuneError
from autotune.states import JobState, TrialState


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
    tolerance: ToleranceOpt = None,
    p99_tolerance: P99ToleranceOpt = None,
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

    study = study_of(model, study_file)
    check_budget(trials, minutes)
    windows = window_flags(study.windows, window_s, warmup_s, max_windows, tolerance, p99_tolerance)
    flagged = (confirm_repeats, confirm_max_repeats, requests_file, batch, variants, mixed_precision)
    study = _with_flags(dataclasses.replace(study, windows=windows), *flagged)
    budget, limit = trials or study.trials, minutes or study.minutes
    settings = study_settings(study)
    _check_study_input(study, settings)
    chosen = resolve_backend(backend.value if backend else study.backend, server_binary, docker_image)
    if foreground:
        _start_foreground(study, budget, limit, settings, chosen, as_json)
    else:
        _start_in_daemon(study, budget, limit, settings, chosen, detach, as_json)


def _with_flags(
    study: Any,
    confirm_repeats: int | None,
    confirm_max_repeats: int | None,
    requests_file: Path | None,
    batch: int | None,
    variants: str | None,
    mixed_precision: bool,
) -> Any:
    """STUDY with what start's flags override (the windows aside)."""
    from autotune.spec import confirm_repeats_problem, variant_names, with_mixed_precision, with_variants

    if confirm_repeats is not None:
        problem = confirm_repeats_problem(confirm_repeats)
        if problem:
            raise AutotuneError(f"--confirm-repeats {problem}")
        study = dataclasses.replace(study, confirm_repeats=confirm_repeats)
    if confirm_max_repeats is not None:
        study = dataclasses.replace(study, confirm_max_repeats=max(confirm_max_repeats, study.confirm_repeats))
    if requests_file is not None:
        study = dataclasses.replace(study, requests=str(requests_file.expanduser().resolve()))
    if batch is not None:
        study = dataclasses.replace(study, batch=batch)
    if variants is not None:
        study = with_variants(study, variant_names(variants))
    if mixed_precision:
        from autotune.cpufeatures import bf16_problem

        study = with_mixed_precision(study, bf16_problem())
    return study


def _start_in_daemon(
    study: Any, budget: int, minutes: float, settings: Any, backend: Any, detach: bool, as_json: bool
) -> None:
    """Queue the job, make sure a daemon runs it, then follow it (or, DETACH, print its id)."""
    from autotune.daemon_control import ensure_daemon
    from autotune.job import enqueue_job

    job_id = enqueue_job(study, budget, minutes, settings, backend)
    jobs_changed()
    pid = ensure_daemon()
    err.print(f"job {job_id} queued for {study.model} ({budget} trials); daemon pid {pid}")
    if detach:
        emit(as_json, {"job_id": job_id, "daemon_pid": pid}, lambda: print(job_id))
        return
    _follow(job_id, as_json)


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
    jobs_changed()
    try:
        result = run_with_progress(study, budget, minutes, settings, backend)
    finally:
        jobs_changed()
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

    job = pick_job(model, job_id)
    rows = Store().job_front(job)
    _show_front(rows, f"Pareto set · job {job.id} · {job.study_name}", job.objectives, as_json)
    if as_json:
        return
    unstable = [
        t.number for t in job.trials if t.state == TrialState.complete and not (t.metrics or {}).get("stable", True)
    ]
    if unstable:
        err.print(f"unstable (never on the front, never exported): trials {', '.join(map(str, unstable))}")
    _print_verdict(rows, job.objectives)


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
        write_export,
    )
    from autotune.knobs import config_from_dict
    from autotune.store import Store

    if storage_uri and fmt != ExportFormat.kserve:
        raise AutotuneError("--storage-uri is for --format kserve")
    job = pick_job(model, job_id)
    rows = Store().job_front(job)
    if pick is None:
        from autotune.pareto import default_pick

        pick = default_pick(job.objectives)
    chosen = choose_entry(job, rows, pick)
    model_base = Path(job.model.path)
    target = check_out_dir(out_dir, model_base, force)
    config = config_from_dict(chosen["config"])
    meta = export_meta(config, chosen["metrics"], job, chosen["trial"])
    for key in ("confirmed", "verdict", "vs_defaults", "defaults", "search_metrics"):
        if key in chosen:
            meta[key] = chosen[key]
    written, files, warmup_note = _server_files(job, config, fmt, target, image, meta)
    deployment = render_deployment(files, config, meta, job.spec, DeployOptions(fmt.value, image, storage_uri))
    written.update(deployment)
    write_export(written, meta, target)
    verdict = summary_line(rows, job.objectives)
    doc = {**meta, "out": str(target), "files": sorted([*written, "autotune.json"]), "verdict_line": verdict}
    if warning := _stand_in_warning(job):
        doc["warning"] = warning
        err.print(f"warning: {warning}", markup=False)

    def show() -> None:
        err.print(f"exported trial {chosen['trial']} of job {job.id} ({tables.short(config.to_dict())}) to {target}")
        err.print(warmup_note, markup=False)
        if "model_variant" in meta:
            err.print(meta["model_variant"], markup=False)
        _print_verdict(rows, job.objectives)

    emit(as_json, doc, show)


def _server_files(
    job: Any, config: Any, fmt: ExportFormat, target: Path, image: str | None, meta: dict[str, Any]
) -> tuple[dict[str, str | bytes], dict[str, str], str]:
    """The files TF Serving reads for JOB's CONFIG (every model's, for a job of several), what of them a
    deployment embeds, and the warm-up note; META learns the mix or the model variant."""
    from autotune.export import several_models_files, single_model_files

    written: dict[str, str | bytes]
    mix = job.measure_settings.mix
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
    return written, files, warmup_note


def _stand_in_warning(job: Any) -> str | None:
    """Where JOB measured the stand-in: a deployment runs TF Serving, so say where the figures came from."""
    from autotune.servers.backends import backend_class

    if (kind := backend_class(job.backend)) is None or not kind.is_stand_in:
        return None
    return (
        f"job {job.id} measured autotune-model-server (the local stand-in), not TF Serving: "
        "check the export with `autotune bench --backend tfserving` or `--backend docker` "
        "before trusting its figures"
    )


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

    job = pick_job(model, job_id)
    target = write_report(job, out_dir, force)
    doc = {"job_id": job.id, "out": str(target), "files": sorted(p.name for p in target.iterdir())}
    emit(as_json, doc, lambda: err.print(f"report of job {job.id} written to {target} (open {target / 'report.html'})"))


def _follow(job_id: int, as_json: bool) -> None:
    """Follow a daemon's job to its end, then show its front; Ctrl-C detaches and the job goes on."""
    from autotune.progress import follow_job
    from autotune.store import Store

    job = follow_job(job_id)
    if job is None:
        return
    rows = Store().job_front(job)
    _show_front(rows, f"Pareto set · job {job.id} · {job.state}", job.objectives, as_json)
    if job.state == JobState.done:
        _print_verdict(rows, job.objectives)
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
