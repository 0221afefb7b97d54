"""What several commands share: options declared once, how a result is printed, one-line failures, and
the checks and lookups more than one command makes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autotune import notes, tables
from autotune.errors import AutotuneError
from autotune.options import CONCURRENCY, MINUTES, RATE, TRIALS, Declared, declared
from autotune.outdir import EXPORT_FORMATS
from autotune.servers.names import BACKEND_NAMES
from autotune.windows import WindowOptions

if TYPE_CHECKING:  # read-only commands stay light: the study module loads when a command needs it
    from autotune.spec import Study


out, err = tables.out, tables.err

EXIT_USER_ERROR = 1
EXIT_TRIAL_FAILED = 3
EXIT_INTERRUPTED = 130


class Protocol(StrEnum):
    rest = "rest"
    grpc = "grpc"


BackendName = StrEnum("BackendName", {n: n for n in BACKEND_NAMES})  # type: ignore[misc]
ExportFormat = StrEnum("ExportFormat", {n: n for n in EXPORT_FORMATS})  # type: ignore[misc]


def flag(d: Declared, *decls: str, show_default: bool = False, help: str | None = None) -> Any:  # noqa: A002
    """The typer option of a declared option (autotune/options.py): its help and environment variable.
    SHOW_DEFAULT puts the default in the help, for options whose CLI default is None (the study's applies);
    HELP words it for one command."""
    return typer.Option(*decls, help=help or (d.help_text() if show_default else d.help), envvar=d.env)


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
ConcurrencyOpt = Annotated[int | None, flag(CONCURRENCY)]
RateOpt = Annotated[float | None, flag(RATE)]
ProtocolOpt = Annotated[Protocol, typer.Option(help="rest or grpc")]
BackendOpt = Annotated[BackendName, typer.Option(help="auto, local, tfserving or docker")]
ServerBinaryOpt = Annotated[str | None, typer.Option(help="path to tensorflow_model_server")]
DockerImageOpt = Annotated[str | None, typer.Option(help="image for --backend docker")]
SignatureOpt = Annotated[str, typer.Option(help="signature to call")]
WindowSOpt = Annotated[float | None, flag(declared(WindowOptions, "window_s"), show_default=True)]
WarmupSOpt = Annotated[float | None, flag(declared(WindowOptions, "warmup_s"), show_default=True)]
MaxWindowsOpt = Annotated[int | None, flag(declared(WindowOptions, "max_windows"), show_default=True)]
ToleranceOpt = Annotated[float | None, flag(declared(WindowOptions, "tolerance"), show_default=True)]
P99ToleranceOpt = Annotated[float | None, flag(declared(WindowOptions, "p99_tolerance"), show_default=True)]


def window_flags(
    base: WindowOptions,
    window_s: float | None,
    warmup_s: float | None,
    max_windows: int | None,
    tolerance: float | None,
    p99_tolerance: float | None,
) -> WindowOptions:
    """BASE (the defaults, or a study's [load]) with the window flags given, checked."""
    return base.with_overrides(
        window_s=window_s, warmup_s=warmup_s, max_windows=max_windows, tolerance=tolerance, p99_tolerance=p99_tolerance
    )


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
TrialsOpt = Annotated[int | None, flag(TRIALS, help="trial budget (default: the study's)")]
MinutesOpt = Annotated[float | None, flag(MINUTES, help="time budget, minutes (default: the study's)")]
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


def load_tensorflow() -> None:
    # Muted, once, before anything else touches it. Only `models build` needs TensorFlow here: the rest of
    # the CLI and the daemon read signatures and build requests with autotune/tfwire.py.
    from autotune.tfimport import import_tensorflow

    import_tensorflow()


def here() -> str:
    """This host's fingerprint: jobs are picked among this host's unless an id names another's."""
    from autotune.fingerprint import fingerprint, host_info

    return fingerprint(host_info())


def pick_job(model: str | None, job_id: int | None) -> Any:
    from autotune.models.resolve import served_name
    from autotune.store import Store

    return Store().pick_job(served_name(model) if model else None, job_id, here())


def check_load(concurrency: int | None, rate: float | None) -> None:
    if concurrency is not None and rate is not None:
        raise AutotuneError("--concurrency and --rate are exclusive (closed loop or open loop)")
    CONCURRENCY.check("concurrency", concurrency)
    RATE.check("rate", rate)


def check_budget(trials: int | None, minutes: float | None) -> None:
    TRIALS.check("trials", trials)
    MINUTES.check("minutes", minutes)


def check_host_knobs(config: Any, backend: Any | None) -> None:
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


def resolve_backend(name: str, server_binary: str | None, image: str | None, check: bool = True) -> Any:
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


def study_of(model: str | None, study_file: Path | None) -> Study:
    """The study a command means: STUDY_FILE's, or MODEL's; exactly one of them."""
    from autotune.spec import load_study, study_for_model

    if (model is None) == (study_file is None):
        raise AutotuneError("give exactly one of --model NAME|PATH or --study FILE")
    return load_study(study_file) if study_file else study_for_model(model or "")


def jobs_changed() -> None:
    """After a command changed a job: `status` reads the store until the daemon has written its list anew."""
    from autotune.daemon_control import mark_changed

    mark_changed()


def fail(as_json: bool, message: str, code: int) -> None:
    # Under --json, a script reads stdout: the error is a JSON object there, with the same exit code.
    # Either way one line: a message with a newline (a parser's, a server's) would read as two errors in a log.
    message = notes.one_line(message)
    if as_json:
        print(json.dumps({"error": message}))
    else:
        err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)
