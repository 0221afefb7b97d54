"""Export a tuned configuration as the files TensorFlow Serving reads.

The flags come from the same builder the trial runner uses, so what was measured
is exactly what is exported. The directory is written beside its target and
renamed into place, so a failed export never leaves half a deployment.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotune import __version__, outdir
from autotune.cpulimit import whole_cores
from autotune.errors import AutotuneError
from autotune.knobs import SAVEDMODEL, ServingConfig, is_tflite
from autotune.models.signature import read_signatures
from autotune.multimodel import models_config_text
from autotune.pareto import PICKS, pick_index  # noqa: F401  (re-exported: the CLI picks through export)
from autotune.protos import batching_parameters_text, monitoring_config_text
from autotune.servers.argv import (
    MAX_WARMUP_RECORDS,
    PER_MODEL_BATCHING_FILE,
    TFLITE_FILE,
    WARMUP_FILE,
    ServerPaths,
    tfserving_flags,
)
from autotune.servers.docker import DockerRun, docker_argv, version_entries
from autotune.states import TrialState
from autotune.traffic.requests import load_requests
from autotune.warmup import warmup_records

if TYPE_CHECKING:
    from autotune.spec import Study


def check_out_dir(out: Path, model_base: Path, force: bool) -> Path:
    """Refuse unsafe targets (see outdir) and the model's own directory, which TF Serving would scan."""
    target = outdir.check_out_dir(out, force)
    if target == model_base or model_base in target.parents:
        raise AutotuneError(f"refusing to export into the model directory {model_base}: TF Serving would scan it")
    return target


def deployed_config(config: ServingConfig) -> ServingConfig:
    """CONFIG as deployments must run it: under a `cpus` allowance, TF's thread pools sized as they were measured.

    The trial pinned the server to ceil(cpus) cores and TF sized its pools from that mask; a container under
    --cpus or a CPU limit sees every core of its node, so the pools are given explicitly."""
    if not config.cpus:
        return config
    cores = whole_cores(config.cpus)
    return config.replace(
        intra_op_threads=config.intra_op_threads or cores, inter_op_threads=config.inter_op_threads or cores
    )


def _config_files(config: ServingConfig, bases: dict[str, Path], out: Path) -> tuple[dict[str, str], Path | None]:
    """The config files every export has (batching when on, models, monitoring), and the batching file's path
    in OUT (None without batching)."""
    files: dict[str, str] = {}
    batching = out / "batching_parameters.txt" if config.enable_batching else None
    if batching is not None:
        files["batching_parameters.txt"] = batching_parameters_text(config)
    files["models.config"] = models_config_text({name: str(base) for name, base in bases.items()})
    files["monitoring.config"] = monitoring_config_text()
    return files, batching


def render(
    config: ServingConfig,
    model_name: str,
    model_base: Path,
    out: Path,
    image: str = "tensorflow/serving:latest",
    version: int = 0,
    placed: tuple[str, ...] = (),
    warmup: bool = False,
) -> dict[str, str]:
    """File name -> contents of an export for CONFIG, with paths pointing into OUT.

    PLACED: files the export ships for VERSION of the model, by their path in its version directory (the
    warm-up file, a variant's model.tflite); docker-run.sh mounts each into it from OUT. WARMUP: the model
    has a warm-up file (placed, or in it)."""
    config = deployed_config(config)
    files, batching = _config_files(config, {model_name: model_base}, out)
    warmup = warmup or str(WARMUP_FILE) in placed
    paths = ServerPaths(model_name, model_base, 8500, 8501, batching, out / "monitoring.config", warmup=warmup)
    files["tfserving.args"] = "\n".join(tfserving_flags(config, paths)) + "\n"
    gpus = bool(config.gpu_memory_fraction)
    mounts = version_entries(model_base / str(version), {p: out / p for p in placed}) if placed else ()
    # No autotune label: autotune removes labelled containers it left behind, never a deployment.
    run = DockerRun(
        image,
        f"tfserving-{model_name}",
        8500,
        8501,
        model_base,
        out,
        gpus,
        label=False,
        version_files=mounts,
        version=version,
    )
    argv = docker_argv(config, model_name, run, monitoring=True)
    files["docker-run.sh"] = (
        "#!/bin/sh\n# Serve the exported configuration with the TensorFlow Serving image.\n"
        "# Ports are published on 127.0.0.1; change them to expose the server.\n"
        "exec docker run " + " \\\n  ".join(_option_lines(argv[2:])) + "\n"
    )
    return files


def export_warmup(job: Any) -> tuple[bytes | None, str]:
    """The warm-up file an export ships for JOB's model (from the job's request file, else synthetic
    requests), and one line saying what it holds; None when the model has its own or is not on this host."""
    settings = job.measure_settings
    version_dir = Path(job.model.path) / str(job.model.version)
    return model_warmup(job.model.name, version_dir, job.spec.signature, settings.requests_file, settings.batch)


@dataclass(frozen=True)
class VariantFiles:
    """What an export ships for a config's model variant: FILES by their path in the export, the model base the
    server is pointed at (an XLA variant's own SavedModel, shipped as model/VERSION; None: the job's model), the
    files docker-run.sh mounts into the model's version directory, and one line saying what it is."""

    files: dict[str, bytes]
    model_base: Path | None
    placed: tuple[str, ...]
    note: str


def export_variant(job: Any, config: ServingConfig, out: Path) -> VariantFiles | None:
    """The files CONFIG's model variant needs in an export into OUT; None for the SavedModel. The variant is the one
    the job measured (cached by model content), refused when it fails the job's accuracy guard."""
    if config.model_variant == SAVEDMODEL:
        return None
    from autotune.models.optimize import checked_variant
    from autotune.models.resolve import resolve_model

    settings = job.measure_settings
    if not (Path(job.model.path) / str(job.model.version) / "saved_model.pb").is_file():
        raise AutotuneError(f"cannot export {config.model_variant}: the model is not at {job.model.path} on this host")
    model = resolve_model(job.model.path, job.spec.signature)
    checked = checked_variant(
        model, config.model_variant, settings.requests_file, settings.min_top1_agreement, settings.max_abs_error
    )
    if checked.problem is not None:  # the front never holds one; a stored job from before the guard might
        raise AutotuneError(f"{config.model_variant} fails the accuracy guard: {checked.problem}")
    accuracy = checked.accuracy
    agreement = f"top-1 agreement {accuracy.top1_agreement:.3f}, " if accuracy.top1_agreement is not None else ""
    figures = f"{agreement}max abs error {accuracy.max_abs_error:.2g} over {accuracy.samples} inputs"
    if is_tflite(config.model_variant):
        note = (
            f"{config.model_variant}: {TFLITE_FILE} ({checked.variant.size_bytes / 1024:.0f} KiB; {figures}) goes in "
            f"{job.model.path}/{job.model.version}/ beside saved_model.pb: without it --prefer_tflite_model serves "
            "the SavedModel (docker-run.sh mounts it)"
        )
        return VariantFiles({TFLITE_FILE: checked.variant.tflite.read_bytes()}, None, (TFLITE_FILE,), note)
    version_dir = checked.variant.base / str(job.model.version)
    files = {
        f"model/{job.model.version}/{p.relative_to(version_dir)}": p.read_bytes()
        for p in sorted(version_dir.rglob("*"))
        if p.is_file()
    }
    note = (
        f"{config.model_variant}: the XLA-compiled SavedModel ({figures}) is model/{job.model.version}/ in the "
        "export, and tfserving.args serves it with --xla_cpu_compilation_enabled=true"
    )
    return VariantFiles(files, out / "model", (), note)


def single_model_files(
    job: Any, config: ServingConfig, target: Path, image: str
) -> tuple[dict[str, str | bytes], dict[str, str], str, str | None]:
    """An export of JOB's model with CONFIG into TARGET: every file to write, the text files the manifests carry,
    the line on its warm-up file, and the line on its model variant (None for the SavedModel)."""
    version = job.model.version
    warmup, warmup_note = export_warmup(job)
    variant = export_variant(job, config, target)
    extra: dict[str, str | bytes] = dict(variant.files) if variant else {}
    placed = list(variant.placed) if variant else []
    base = variant.model_base if variant and variant.model_base else Path(job.model.path)
    if warmup is not None:
        if variant and variant.model_base:  # the export's own copy of the model takes its warm-up file in place
            extra[f"model/{version}/{WARMUP_FILE}"] = warmup
        else:
            extra[str(WARMUP_FILE)] = warmup
            placed.append(str(WARMUP_FILE))
    files = render(config, job.model.name, base, target, image, version, tuple(placed), warmup is not None)
    return {**files, **extra}, files, warmup_note, variant.note if variant else None


def model_warmup(
    name: str, version_dir: Path, signature_name: str, requests_file: str | None, batch: int | None
) -> tuple[bytes | None, str]:
    """The warm-up file for model NAME at VERSION_DIR, from REQUESTS_FILE (else synthetic requests), and a line
    saying what it holds; None when the model has its own or is not on this host."""
    if (version_dir / WARMUP_FILE).is_file():
        return None, f"warm-up: the model's own {WARMUP_FILE}"
    if not (version_dir / "saved_model.pb").is_file():
        return None, f"no warm-up file: the model is not at {version_dir} on this host"
    signature = read_signatures(version_dir).get(signature_name)
    if signature is None:
        return None, "no warm-up file: the job's signature is gone from the model"
    try:
        requests = load_requests(requests_file, signature, batch)
    except AutotuneError as exc:
        requests = load_requests(None, signature, batch)
        note = f"warm-up from synthetic requests; the job's request file is unusable now ({exc})"
    else:
        note = f"warm-up from {requests.source} requests"
    records = min(len(requests.requests), MAX_WARMUP_RECORDS)
    return warmup_records(requests.payloads(name, signature.name)), f"{note} ({records} records)"


@dataclass(frozen=True)
class ServedModel:
    """One model of a multi-model export: where it lives, and its warm-up file (None: none shipped)."""

    base: Path
    version: int
    warmup: bytes | None


def render_several(config: ServingConfig, models: dict[str, ServedModel], out: Path) -> dict[str, str | bytes]:
    """File name -> contents of an export serving MODELS from one TF Serving (--model_config_file).

    Each model batches by its own batching_params.pbtxt (OUT/NAME/, to be placed in its version directory)
    and shares the batch threads of batching_parameters.txt; its warm-up file is in OUT/NAME/assets.extra/."""
    config = deployed_config(config)
    text, batching = _config_files(config, {name: m.base for name, m in models.items()}, out)
    files: dict[str, str | bytes] = dict(text)
    for name, model in models.items():
        if batching is not None:
            files[f"{name}/{PER_MODEL_BATCHING_FILE}"] = text["batching_parameters.txt"]
        if model.warmup is not None:
            files[f"{name}/{WARMUP_FILE}"] = model.warmup
    first = next(iter(models))
    paths = ServerPaths(
        first,
        models[first].base,
        8500,
        8501,
        batching,
        out / "monitoring.config",
        warmup=True,
        model_config_file=out / "models.config",
    )
    files["tfserving.args"] = "\n".join(tfserving_flags(config, paths)) + "\n"
    return files


def several_models_files(
    job: Any, config: ServingConfig, mix: dict[str, float], out: Path
) -> tuple[dict[str, str | bytes], str]:
    """The files of an export of JOB, a job of the models in MIX, and a line on their warm-up files."""
    from autotune.models.resolve import resolve_model

    settings, study = job.measure_settings, job.spec
    models, notes = {}, []
    for spec in mix:
        ref = resolve_model(spec)
        primary = ref.name == job.model.name
        requests_file = settings.requests_file if primary else None
        signature = study.signature if primary else "serving_default"
        warmup, note = model_warmup(ref.name, ref.version_path, signature, requests_file, settings.batch)
        models[ref.name] = ServedModel(ref.base_path, ref.version, warmup)
        notes.append(f"{ref.name}: {note}")
    return render_several(config, models, out), "; ".join(notes)


def render_deployment(
    files: dict[str, str], config: ServingConfig, meta: dict[str, Any], study: Study, options: DeployOptions
) -> dict[str, str]:
    """What an export adds to the TF Serving FILES: the Grafana dashboard always, manifests for k8s or kserve."""
    import yaml

    from autotune import grafana, k8s

    config = deployed_config(config)
    name = meta["model_name"]
    metrics = meta["metrics"]
    board = grafana.dashboard(name, grafana.envelope_of(metrics, study))
    extra = {"grafana-dashboard.json": json.dumps(board, indent=2) + "\n"}
    if options.format == "tfserving":
        return extra
    resources = k8s.pod_resources(config, metrics)
    header = (
        f"# autotune: job {meta['job_id']} trial {meta['trial']}; resources from the measurement ({resources.basis})\n"
    )
    if "model_variant" in meta:  # the manifests pass --prefer_tflite_model; the file must reach the volume
        header += f"# {meta['model_variant']}\n"
    docs: list[dict[str, Any]] = [k8s.config_map(name, files)]
    if options.format == "k8s":
        docs += [k8s.deployment(name, config, options.image, resources, meta), k8s.service(name)]
    else:
        storage = options.storage_uri or f"pvc://{name}-model/"
        docs.append(k8s.inference_service(name, config, options.image, resources, meta, storage))
    extra[f"{options.format}.yaml"] = header + yaml.safe_dump_all(docs, sort_keys=False)
    return extra


@dataclass(frozen=True)
class DeployOptions:
    """How an export is deployed: as TF Serving files only, or with Kubernetes / KServe manifests too."""

    format: str = "tfserving"
    image: str = "tensorflow/serving:latest"
    storage_uri: str | None = None  # KServe: where the SavedModel lives (default: the PVC NAME-model)


def _option_lines(argv: list[str]) -> list[str]:
    """Shell-quoted argv grouped one option (with its value) per line."""
    lines: list[str] = []
    for arg in argv:
        if lines and lines[-1].startswith("-") and " " not in lines[-1] and not arg.startswith("-"):
            lines[-1] += " " + shlex.quote(arg)
        else:
            lines.append(shlex.quote(arg))
    return lines


def write_export(files: dict[str, str | bytes], meta: dict[str, Any], target: Path) -> None:
    """Write FILES plus autotune.json into TARGET atomically."""
    everything: dict[str, str | bytes] = {**files, "autotune.json": json.dumps(meta, indent=2) + "\n"}
    outdir.write_dir(everything, target, executable={"docker-run.sh"})


def choose_entry(job: Any, rows: list[dict[str, Any]], pick: str) -> dict[str, Any]:
    """The front row PICK names (max-throughput, min-latency, balanced), or 'trial N' of JOB (a stored job row)."""
    if not pick.startswith("trial"):
        return rows[pick_index([r["metrics"] for r in rows], pick)]
    number = pick.removeprefix("trial").strip()
    if not number.isdigit():
        raise AutotuneError(f"--pick trial N needs a trial number, got {pick!r}")
    on_front = [r for r in rows if r["trial"] == int(number)]
    if on_front:
        return on_front[0]
    trials = [t for t in job.trials if t.number == int(number) and t.state == TrialState.complete]
    if not trials:
        raise AutotuneError(f"trial {number} of job {job.id} does not exist or did not complete")
    if not (trials[0].metrics or {}).get("stable", True):
        raise AutotuneError(f"trial {number} of job {job.id} was unstable: its figures are not exported")
    return {"trial": trials[0].number, "config": trials[0].config, "metrics": trials[0].metrics}


def export_meta(config: ServingConfig, metrics: dict[str, Any], job: Any, trial_number: int) -> dict[str, Any]:
    """autotune.json: what was exported, how it measured, where, and by which job (a stored job row)."""
    return {
        "autotune_version": __version__,
        "job_id": job.id,
        "job": job.study_name,
        "trial": trial_number,
        "config": config.to_dict(),
        "metrics": metrics,
        "model_name": job.model.name,
        "model": {"path": job.model.path, "version": job.model.version, "content_hash": job.model.content_hash},
        "host": job.host.info,
        "host_fingerprint": job.host.fingerprint,
        "backend": job.backend,
    }
