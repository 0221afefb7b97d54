"""Which server runs a trial: autotune's local one, the real tensorflow_model_server, or its Docker image."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from autotune.errors import AutotuneError
from autotune.knobs import ServingConfig
from autotune.servers.argv import ServerPaths, tfserving_flags
from autotune.servers.docker import DEFAULT_IMAGE, DockerRun, docker_argv, remove_argv

TFSERVING_BINARY = "tensorflow_model_server"
BACKENDS = ("auto", "local", "tfserving", "docker")

# tensorflow_model_server has no flag to choose its listen address: REST binds every interface.
TFSERVING_EXPOSURE = (
    "note: tensorflow_model_server binds its REST port on all interfaces (it has no flag to restrict it); "
    "autotune moves its gRPC to a UNIX socket and uses random ports, but use --backend docker "
    "(ports published on 127.0.0.1 only) on hosts reachable from untrusted networks"
)


@dataclass(frozen=True)
class Launch:
    """How to start one server and reach it."""

    argv: list[str]
    grpc_target: str  # what the load generator dials: 127.0.0.1:PORT or unix:PATH
    cleanup: list[str] | None = None  # run after the process group is gone (a container outlives its client)
    container: str | None = None


@dataclass(frozen=True)
class Backend:
    """A server program and how it is started."""

    name: str  # local | tfserving | docker
    program: tuple[str, ...]
    image: str | None = None
    gpus: bool = False

    def launch(self, config: ServingConfig, paths: ServerPaths, workdir: Path) -> Launch:
        """The command line for CONFIG, with the model and files at PATHS (host view) and WORKDIR for sockets."""
        if self.name == "docker":
            name = f"autotune-{paths.model_name}-{uuid.uuid4().hex[:10]}"
            run = DockerRun(
                self.image or DEFAULT_IMAGE,
                name,
                paths.grpc_port,
                paths.rest_port,
                paths.model_base_path,
                workdir,
                self.gpus,
            )
            argv = docker_argv(config, paths.model_name, run, paths.monitoring_file is not None)
            return Launch(argv, f"127.0.0.1:{paths.grpc_port}", remove_argv(name), name)
        if self.name == "tfserving":
            # No TCP gRPC listener at all (it would bind 0.0.0.0): gRPC goes over a UNIX socket.
            socket_path = workdir / "grpc.sock"
            flags = tfserving_flags(config, _with_socket(paths, socket_path))
            return Launch([*self.program, *flags], f"unix:{socket_path}")
        return Launch([*self.program, *tfserving_flags(config, paths)], f"127.0.0.1:{paths.grpc_port}")


def _with_socket(paths: ServerPaths, socket_path: Path) -> ServerPaths:
    return ServerPaths(
        paths.model_name,
        paths.model_base_path,
        0,
        paths.rest_port,
        paths.batching_file,
        paths.monitoring_file,
        socket_path,
    )


def local_backend() -> Backend:
    """autotune-model-server, run by this Python."""
    return Backend("local", (sys.executable, "-m", "autotune.servers.local"))


def _check_docker() -> None:
    if shutil.which("docker") is None:
        raise AutotuneError("backend docker: the docker command is not on PATH")
    try:
        out = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AutotuneError("backend docker: the docker daemon did not answer within 20 s") from None
    if out.returncode != 0:
        lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()] or ["no reason given"]
        raise AutotuneError(f"backend docker: the docker daemon is not reachable: {lines[-1]}")


def resolve_backend(
    name: str = "auto",
    server_binary: str | None = None,
    image: str | None = None,
    gpus: bool = False,
    check: bool = True,
) -> Backend:
    """auto: tfserving when the binary is on PATH (or given), else local. CHECK=False (dry runs) skips probing."""
    if name not in BACKENDS:
        raise AutotuneError(f"unknown backend '{name}' ({', '.join(BACKENDS)})")
    if name == "docker":
        if check:
            _check_docker()
        return Backend("docker", ("docker",), image or DEFAULT_IMAGE, gpus)
    if server_binary and not Path(server_binary).is_file():
        raise AutotuneError(f"--server-binary {server_binary} does not exist")
    binary = server_binary or shutil.which(TFSERVING_BINARY)
    if name == "tfserving" or (name == "auto" and binary):
        if not binary:
            if check:
                raise AutotuneError(f"backend tfserving: {TFSERVING_BINARY} not found on PATH (use --server-binary)")
            binary = TFSERVING_BINARY
        return Backend("tfserving", (str(binary),))
    return local_backend()
