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
from autotune.servers.argv import ServerPaths, tfserving_flags

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


def container_paths(model_name: str, batching: bool, monitoring: bool) -> ServerPaths:
    """Where the server inside the container finds the model and the config files."""
    return ServerPaths(
        model_name,
        Path(f"/models/{model_name}"),
        CONTAINER_GRPC_PORT,
        CONTAINER_REST_PORT,
        Path("/config/batching_parameters.txt") if batching else None,
        Path("/config/monitoring.config") if monitoring else None,
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
        "-v",
        f"{run.model_base}:/models/{model_name}:ro",
        "-v",
        f"{run.config_dir}:/config:ro",
        run.image,
    ]
    return argv + tfserving_flags(config, container_paths(model_name, config.enable_batching, monitoring))


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
