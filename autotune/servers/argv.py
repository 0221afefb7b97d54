"""TF Serving command lines and files, built once for measuring and for exports.

Every flag emitted here is a real tensorflow_model_server flag, so what autotune
measures is exactly what it exports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autotune.knobs import MIXED_PRECISION, SAVEDMODEL, ServingConfig, is_tflite

# Where TF Serving looks for a model's warm-up requests, inside its version directory.
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
# saved_model_warmup_util's WarmupConsts::kMaxNumRecords: more records fail the model's load.
MAX_WARMUP_RECORDS = 1000
# A model's own BatchingParameters in its version directory (--enable_per_model_batching_parameters).
PER_MODEL_BATCHING_FILE = "batching_params.pbtxt"
# What --prefer_tflite_model serves from the version directory, instead of the graph.
TFLITE_FILE = "model.tflite"


@dataclass(frozen=True)
class ServerPaths:
    """Where the server finds its model and config files, and its ports."""

    model_name: str
    model_base_path: Path
    grpc_port: int
    rest_port: int
    batching_file: Path | None = None
    monitoring_file: Path | None = None
    grpc_socket: Path | None = None  # gRPC on a UNIX socket instead of a TCP port (then grpc_port is 0)
    warmup: bool = False  # the model's version directory holds a warm-up file (autotune/warmup.py)
    # The base is a rebuilt version directory of symlinks (warmup.warmed_model_base): its version, so a
    # container, where host symlinks do not resolve, can mount what they point to.
    overlay_version: int | None = None
    # Several models from one server (multi-model studies): their ModelServerConfig replaces the name and
    # base path flags, and each model's batching is its own batching_params.pbtxt.
    model_config_file: Path | None = None


def tfserving_flags(config: ServingConfig, paths: ServerPaths) -> list[str]:
    """The flags for CONFIG, in `--name=value` form."""
    flags = [f"--port={paths.grpc_port}"]
    if paths.grpc_socket is not None:
        flags.append(f"--grpc_socket_path={paths.grpc_socket}")
    flags.append(f"--rest_api_port={paths.rest_port}")
    if paths.model_config_file is not None:
        flags.append(f"--model_config_file={paths.model_config_file}")
    else:
        flags += [f"--model_name={paths.model_name}", f"--model_base_path={paths.model_base_path}"]
    if config.enable_batching:
        flags.append("--enable_batching=true")
        if paths.batching_file is not None:
            flags.append(f"--batching_parameters_file={paths.batching_file}")
        if paths.model_config_file is not None:
            flags.append("--enable_per_model_batching_parameters=true")
    if config.intra_op_threads:
        flags.append(f"--tensorflow_intra_op_parallelism={config.intra_op_threads}")
    if config.inter_op_threads:
        flags.append(f"--tensorflow_inter_op_parallelism={config.inter_op_threads}")
    if config.gpu_memory_fraction:
        flags.append(f"--per_process_gpu_memory_fraction={config.gpu_memory_fraction:g}")
    if config.mixed_precision != MIXED_PRECISION[0]:
        flags.append(f"--mixed_precision={config.mixed_precision}")
    if is_tflite(config.model_variant):
        flags.append("--prefer_tflite_model=true")  # the variant's model.tflite sits in the version directory
    elif config.model_variant != SAVEDMODEL:  # xla: TF Serving refuses a jit_compile model's first request without
        flags.append("--xla_cpu_compilation_enabled=true")
    if paths.monitoring_file is not None:
        flags.append(f"--monitoring_config_file={paths.monitoring_file}")
    if paths.warmup:
        flags.append("--enable_model_warmup=true")  # TF Serving's default, said outright: the file is there for it
    return flags


def write_batching_file(config: ServingConfig, path: Path) -> Path | None:
    """Write the BatchingParameters file when batching is on; return its path."""
    from autotune.protos import batching_parameters_text  # protobuf: only where a file is written

    if not config.enable_batching:
        return None
    path.write_text(batching_parameters_text(config))
    return path


def one_model_argv(program: list[str], name: str, base_path: Path, grpc_port: int, rest_port: int) -> list[str]:
    """PROGRAM serving one model on both APIs with TF Serving's defaults otherwise."""
    return [*program, f"--port={grpc_port}", f"--rest_api_port={rest_port}", f"--model_name={name}",
            f"--model_base_path={base_path}"]  # fmt: skip
