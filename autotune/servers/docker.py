"""`docker run` of the tensorflow/serving image: one builder for trials and for docker-run.sh exports.

Ports are published on 127.0.0.1 only; the model and the config directory are
mounted read-only; every container autotune starts carries a label, so one left
behind by a crash can be found and removed.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from autotune.knobs import ServingConfig
from autotune.servers.argv import WARMUP_FILE, ServerPaths, tfserving_flags

DEFAULT_IMAGE = "tensorflow/serving:latest"
LABEL = "io.autotune.owner=autotune"
CONTAINER_GRPC_PORT = 8500
CONTAINER_REST_PORT = 8501


@dataclass(frozen=True)
class DockerRun:
    """One container: image, name, host ports (on 127.0.0.1), host directories to mount."""

    image: str
    name: str
    grpc_port: int
    rest_port: int
    model_base: Path
    config_dir: Path
    gpus: bool = False
    remove: bool = True
    label: bool = True  # trials are labelled so a crash's leftovers can be found; exports are not
    cpuset: tuple[int, ...] = ()  # host cores the container may run on (trials: the planned set; exports: any)
    # Mounted one by one into /models/NAME/VERSION instead of the whole base (see version_entries).
    version_files: tuple[tuple[str, Path], ...] = ()
    version: int = 0


def version_entries(version_dir: Path, placed: dict[str, Path] | None = None) -> tuple[tuple[str, Path], ...]:
    """(path in the version directory, host path) for each entry of VERSION_DIR and of its assets.extra,
    symlinks resolved, plus PLACED files (a warm-up file, a variant's model.tflite) by their path in it.

    Mounting entry by entry lets files join a model without writing into it: a file mounted inside a
    read-only mount of the model would need its mountpoint created in the model."""
    out: dict[str, Path] = {}
    for entry in sorted(version_dir.iterdir()):
        if entry.name == WARMUP_FILE.parent.name and entry.is_dir():
            for inner in sorted(entry.iterdir()):
                out[f"{entry.name}/{inner.name}"] = inner.resolve()
        else:
            out[entry.name] = entry.resolve()
    out.update(placed or {})
    return tuple(out.items())


def container_paths(model_name: str, batching: bool, monitoring: bool, warmup: bool = False) -> ServerPaths:
    """Where the server inside the container finds the model and the config files."""
    return ServerPaths(
        model_name,
        Path(f"/models/{model_name}"),
        CONTAINER_GRPC_PORT,
        CONTAINER_REST_PORT,
        Path("/config/batching_parameters.txt") if batching else None,
        Path("/config/monitoring.config") if monitoring else None,
        warmup=warmup,
    )


def docker_argv(config: ServingConfig, model_name: str, run: DockerRun, monitoring: bool) -> list[str]:
    """The full `docker run ...` command line for CONFIG."""
    argv = ["docker", "run"]
    if run.remove:
        argv.append("--rm")
    argv += ["--name", run.name] + (["--label", LABEL] if run.label else [])
    if run.gpus:
        argv += ["--gpus", "all"]
    if config.cpus:
        argv.append(f"--cpus={config.cpus:g}")
    if run.cpuset:
        argv.append(f"--cpuset-cpus={','.join(map(str, run.cpuset))}")
    argv += [
        "-p",
        f"127.0.0.1:{run.grpc_port}:{CONTAINER_GRPC_PORT}",
        "-p",
        f"127.0.0.1:{run.rest_port}:{CONTAINER_REST_PORT}",
    ]
    if run.version_files:
        for rel, host in run.version_files:
            argv += ["-v", f"{host}:/models/{model_name}/{run.version}/{rel}:ro"]
    else:
        argv += ["-v", f"{run.model_base}:/models/{model_name}:ro"]
    argv += ["-v", f"{run.config_dir}:/config:ro", run.image]
    warmup = str(WARMUP_FILE) in dict(run.version_files)
    return argv + tfserving_flags(config, container_paths(model_name, config.enable_batching, monitoring, warmup))


def remove_argv(name: str) -> list[str]:
    """Force-remove a container (stops it first); harmless when it is already gone."""
    return ["docker", "rm", "-f", name]


def container_pid(name: str, timeout_s: float = 10.0) -> int | None:
    """The host pid of the container's main process (to sample its CPU and GPU), or None."""
    try:
        out = subprocess.run(
            ["docker", "inspect", "--format", "{{.State.Pid}}", name],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        pid = int(out.stdout.strip() or 0)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    return pid or None
